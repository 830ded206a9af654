//! The inference engine: one thread owns the model and advances every active request by one token
//! per step (step-level batching), fed by a bounded queue.
//!
//! A request is cancelled as soon as its event receiver is dropped (client gone, response future
//! dropped) or its deadline passes. Dropping the [`Engine`] closes the queue; the thread finishes
//! the sequences it holds and exits, and [`Engine::shutdown`] waits for that.

use crate::metrics::Metrics;
use crate::ApiError;
use magma_model::batch::decode_step;
use magma_model::generation::Sampler;
use magma_model::{Cache, FinishReason, GenerationParams, MagmaPipeline};
use magma_processor::ProcessedInputs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One generation request.
#[derive(Debug)]
pub struct Job {
    /// Tokenized prompt and preprocessed images.
    pub inputs: ProcessedInputs,
    /// Sampling and stop settings.
    pub params: GenerationParams,
    /// Where tokens and the result go; dropping the receiver cancels the job.
    pub events: mpsc::UnboundedSender<Event>,
    /// The job fails with a timeout when still queued or running at this instant.
    pub deadline: Instant,
    /// The timeout the deadline came from (for the error message).
    pub timeout: Duration,
}

/// What the engine reports about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it adds (may be empty while a character is incomplete).
    Token { id: u32, delta: String },
    /// Generation ended.
    Done(Completion),
    /// Generation failed.
    Failed(ApiError),
}

/// The result of a finished job.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub prompt_tokens: usize,
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
}

/// Engine limits.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Most sequences decoded together in one step.
    pub max_batch: usize,
    /// Most jobs waiting for admission; more are refused with 429.
    pub queue_capacity: usize,
}

/// Handle to the engine thread.
#[derive(Debug)]
pub struct Engine {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    capacity: usize,
}

impl Engine {
    /// Moves `pipeline` onto a new engine thread.
    pub fn start(
        pipeline: MagmaPipeline,
        options: EngineOptions,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let capacity = options.queue_capacity.max(1);
        let (queue, jobs) = mpsc::channel(capacity);
        let worker = Worker {
            pipeline,
            jobs,
            max_batch: options.max_batch.max(1),
            metrics: metrics.clone(),
            active: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("magma-engine".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
            metrics,
            capacity,
        })
    }

    /// Queues a job; fails at once with 429 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let queue = self.queue.lock().ok().and_then(|q| q.clone());
        let queue =
            queue.ok_or_else(|| ApiError::Unavailable("the server is shutting down".into()))?;
        // count before sending so the worker's decrement can never underflow
        self.metrics.queue_depth.fetch_add(1, Ordering::SeqCst);
        queue.try_send(job).map_err(|e| {
            self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => ApiError::Busy {
                    queued: self.capacity,
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Unavailable("the engine thread has stopped".into())
                }
            }
        })
    }

    /// Closes the queue and waits until every queued and running job has finished.
    pub fn shutdown(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the engine thread panicked");
            }
        }
    }
}

/// One request being decoded.
struct Sequence {
    events: mpsc::UnboundedSender<Event>,
    deadline: Instant,
    timeout: Duration,
    params: GenerationParams,
    stop_ids: Vec<u32>,
    sampler: Sampler,
    cache: Cache,
    history: Vec<u32>,
    prompt_tokens: usize,
    generated: Vec<u32>,
    /// Text streamed so far.
    text: String,
    /// The final text when a stop string cut it.
    cut_text: Option<String>,
    finished: Option<FinishReason>,
}

struct Worker {
    pipeline: MagmaPipeline,
    jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    metrics: Arc<Metrics>,
    active: Vec<Sequence>,
}

impl Worker {
    fn run(mut self) {
        let mut open = true;
        while open || !self.active.is_empty() {
            if self.active.is_empty() {
                match self.jobs.blocking_recv() {
                    Some(job) => self.admit(job),
                    None => open = false,
                }
            }
            while open && self.active.len() < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            self.step();
            self.metrics
                .active_sequences
                .store(self.active.len(), Ordering::SeqCst);
        }
    }

    /// Vision, prefill and the first token of a new job.
    fn admit(&mut self, job: Job) {
        self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
        self.metrics
            .prompt_tokens
            .fetch_add(job.inputs.merged_len as u64, Ordering::Relaxed);
        if job.events.is_closed() {
            return;
        }
        if Instant::now() >= job.deadline {
            let _ = job.events.send(Event::Failed(ApiError::Timeout {
                seconds: job.timeout.as_secs_f64(),
            }));
            return;
        }
        match self.prefill(&job) {
            Ok((cache, logits)) => {
                let mut stop_ids = self.pipeline.stop_ids();
                stop_ids.extend(&job.params.stop_token_ids);
                let mut seq = Sequence {
                    sampler: Sampler::new(&job.params),
                    prompt_tokens: job.inputs.input_ids.len(),
                    history: job.inputs.input_ids.clone(),
                    events: job.events,
                    deadline: job.deadline,
                    timeout: job.timeout,
                    params: job.params,
                    stop_ids,
                    cache,
                    generated: Vec::new(),
                    text: String::new(),
                    cut_text: None,
                    finished: None,
                };
                if seq.params.max_new_tokens == 0 {
                    seq.finished = Some(FinishReason::Length);
                } else {
                    self.accept(&mut seq, &logits);
                }
                self.finish_or_keep(seq);
            }
            Err(e) => {
                let _ = job.events.send(Event::Failed(e));
            }
        }
    }

    fn prefill(&self, job: &Job) -> Result<(Cache, Vec<f32>), ApiError> {
        let model = self.pipeline.model();
        let images = self.pipeline.image_batch(&job.inputs).map_err(internal)?;
        let features = match &images {
            Some(images) => model.image_features(images).map_err(internal)?,
            None => Vec::new(),
        };
        let embeds = model
            .merge(&job.inputs.input_ids, &features)
            .map_err(internal)?;
        let mut cache = model.new_cache();
        let logits = model.forward(&embeds, &mut cache, true).map_err(internal)?;
        let row = logits
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| internal(e.into()))?;
        Ok((cache, row))
    }

    /// One decode token for every active sequence, then retire the finished ones.
    fn step(&mut self) {
        let now = Instant::now();
        for seq in &mut self.active {
            if seq.events.is_closed() {
                seq.finished = Some(FinishReason::Cancelled);
            } else if now >= seq.deadline {
                let _ = seq.events.send(Event::Failed(ApiError::Timeout {
                    seconds: seq.timeout.as_secs_f64(),
                }));
                seq.finished = Some(FinishReason::Cancelled);
            }
        }
        self.active.retain(|s| s.finished.is_none());
        if self.active.is_empty() {
            return;
        }
        let started = Instant::now();
        let tokens: Vec<u32> = self
            .active
            .iter()
            .map(|s| s.generated.last().copied().unwrap_or(0))
            .collect();
        let mut caches: Vec<&mut Cache> = self.active.iter_mut().map(|s| &mut s.cache).collect();
        let rows = decode_step(self.pipeline.model(), &tokens, &mut caches)
            .and_then(|t| Ok(t.to_vec2::<f32>()?));
        match rows {
            Ok(rows) => {
                let mut active = std::mem::take(&mut self.active);
                for (seq, row) in active.iter_mut().zip(&rows) {
                    self.accept(seq, row);
                }
                let n = active.len();
                for seq in active {
                    self.finish_or_keep(seq);
                }
                self.metrics.record_step(n, started.elapsed());
            }
            Err(e) => {
                let error = internal(e);
                for seq in self.active.drain(..) {
                    let _ = seq.events.send(Event::Failed(error.clone()));
                }
            }
        }
    }

    /// Samples the next token from `logits` and applies the stop rules of
    /// `magma_model::generation::decode_loop`, so the text equals `MagmaPipeline::generate`'s.
    fn accept(&self, seq: &mut Sequence, logits: &[f32]) {
        let next = seq.sampler.sample(logits, &seq.history);
        if seq.stop_ids.contains(&next) {
            seq.finished = Some(FinishReason::Stop);
            return;
        }
        seq.generated.push(next);
        seq.history.push(next);
        self.metrics
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        let full = match self.pipeline.processor().decode(&seq.generated) {
            Ok(text) => text,
            Err(e) => {
                let _ = seq
                    .events
                    .send(Event::Failed(ApiError::Internal(e.to_string())));
                seq.finished = Some(FinishReason::Cancelled);
                return;
            }
        };
        let cut = seq
            .params
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| full.find(s.as_str()))
            .min();
        let (stable, stopped) = match cut {
            Some(cut) => (full.get(..cut).unwrap_or_default().to_string(), true),
            // hold back a trailing U+FFFD: the next token may complete the character
            None => (full.trim_end_matches('\u{FFFD}').to_string(), false),
        };
        let delta = stable
            .get(common_prefix_len(&seq.text, &stable)..)
            .unwrap_or_default()
            .to_string();
        let sent = seq.events.send(Event::Token { id: next, delta });
        seq.text = stable;
        if stopped {
            seq.cut_text = Some(seq.text.clone());
            seq.finished = Some(FinishReason::Stop);
        } else if sent.is_err() {
            seq.finished = Some(FinishReason::Cancelled);
        } else if seq.generated.len() >= seq.params.max_new_tokens {
            seq.finished = Some(FinishReason::Length);
        }
    }

    fn finish_or_keep(&mut self, seq: Sequence) {
        let Some(reason) = seq.finished else {
            self.active.push(seq);
            return;
        };
        if reason == FinishReason::Cancelled {
            return;
        }
        let text = match seq.cut_text {
            Some(text) => Ok(text),
            None => self.pipeline.processor().decode(&seq.generated),
        };
        let event = match text {
            Ok(text) => Event::Done(Completion {
                prompt_tokens: seq.prompt_tokens,
                generated_ids: seq.generated,
                text,
                finish_reason: reason,
            }),
            Err(e) => Event::Failed(ApiError::Internal(e.to_string())),
        };
        let _ = seq.events.send(event);
    }
}

fn internal(e: magma_model::ModelError) -> ApiError {
    match e {
        magma_model::ModelError::PromptTooLong { .. }
        | magma_model::ModelError::InvalidParams(_) => {
            ApiError::bad_request("messages", e.to_string())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

/// Byte length of the longest common prefix of `a` and `b` that ends on a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}
