//! Counters and histograms exposed at `/metrics` in the Prometheus text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Server-wide metrics, shared by the HTTP layer and the engine thread.
///
/// ```
/// use magma_serve::Metrics;
/// use std::time::Duration;
/// let m = Metrics::default();
/// m.record_request("/health", 200, Duration::from_millis(3));
/// let text = m.render();
/// assert!(text.contains("magma_requests_total{route=\"/health\",status=\"200\"} 1"));
/// assert!(text.contains("magma_request_duration_seconds_bucket{le=\"0.005\"} 1"));
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
    /// Tokens generated, all requests together.
    pub generated_tokens: AtomicU64,
    /// Prompt tokens admitted.
    pub prompt_tokens: AtomicU64,
    /// Jobs waiting for the engine.
    pub queue_depth: AtomicUsize,
    /// Sequences being decoded.
    pub active_sequences: AtomicUsize,
    /// Engine decode steps run and tokens they produced, and the time spent in them (µs).
    steps: AtomicU64,
    step_tokens: AtomicU64,
    step_micros: AtomicU64,
    /// Throughput of the most recent step, tokens/s, as f64 bits.
    last_tokens_per_s: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, route: &str, status: u16, latency: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut h) = self.latency.lock() {
            let s = latency.as_secs_f64();
            for (count, bound) in h.counts.iter_mut().zip(LATENCY_BUCKETS) {
                if s <= bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }

    /// Counts one engine step that decoded `tokens` tokens in `elapsed`.
    pub fn record_step(&self, tokens: usize, elapsed: Duration) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.step_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.step_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let rate = tokens as f64 / elapsed.as_secs_f64().max(1e-9);
        self.last_tokens_per_s
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP magma_requests_total HTTP requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE magma_requests_total counter");
        if let Ok(requests) = self.requests.lock() {
            for ((route, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "magma_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP magma_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE magma_request_duration_seconds histogram");
        if let Ok(h) = self.latency.lock() {
            for (count, bound) in h.counts.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(
                    out,
                    "magma_request_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "magma_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "magma_request_duration_seconds_sum {}", h.sum);
            let _ = writeln!(out, "magma_request_duration_seconds_count {}", h.count);
        }
        let steps = self.steps.load(Ordering::Relaxed);
        let step_tokens = self.step_tokens.load(Ordering::Relaxed);
        let busy = self.step_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let gauges: [(&str, &str, &str, f64); 8] = [
            (
                "magma_generated_tokens_total",
                "counter",
                "Tokens generated.",
                self.generated_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "magma_prompt_tokens_total",
                "counter",
                "Prompt tokens admitted.",
                self.prompt_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "magma_engine_steps_total",
                "counter",
                "Batched decode steps run.",
                steps as f64,
            ),
            (
                "magma_engine_step_seconds_total",
                "counter",
                "Time spent in decode steps.",
                busy,
            ),
            (
                "magma_engine_tokens_per_second",
                "gauge",
                "Decode throughput over all steps so far (tokens per second of step time).",
                if busy > 0.0 {
                    step_tokens as f64 / busy
                } else {
                    0.0
                },
            ),
            (
                "magma_engine_last_step_tokens_per_second",
                "gauge",
                "Decode throughput of the latest step.",
                f64::from_bits(self.last_tokens_per_s.load(Ordering::Relaxed)),
            ),
            (
                "magma_queue_depth",
                "gauge",
                "Requests waiting for the engine.",
                self.queue_depth.load(Ordering::SeqCst) as f64,
            ),
            (
                "magma_active_sequences",
                "gauge",
                "Requests being decoded.",
                self.active_sequences.load(Ordering::SeqCst) as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
