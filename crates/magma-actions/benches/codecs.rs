//! Throughput of the codecs on the paths an agent runs every step.
//!
//! `cargo bench -p magma-actions --bench codecs`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use magma_actions::marks::{tom, GridPoint, MarkTrace};
use magma_actions::robot::{ActionTokenizer, Embodiment, RobotActionDecoder, StatisticsSet};
use magma_actions::ui::{resolve_click, AitwAction, MarkBoxes, UiAnswer};

fn robot(c: &mut Criterion) {
    let stats = StatisticsSet::builtin();
    let google = stats.get(Some("google_robot")).unwrap().action.clone();
    let tokenizer = ActionTokenizer::new(128_000).unwrap();
    let generated = [
        127857, 127873, 127868, 127904, 127861, 127874, 127744, 128009,
    ];
    let mut decoder = RobotActionDecoder::new(tokenizer.clone(), google, Some(Embodiment::Google));
    c.bench_function("robot/decode_step_google", |b| {
        b.iter(|| decoder.decode_generated(black_box(&generated)).unwrap())
    });
    let action = [0.3, -0.2, 0.1, 0.0, 0.5, -0.9, 1.0];
    c.bench_function("robot/encode_7", |b| {
        b.iter(|| tokenizer.encode(black_box(&action)).unwrap())
    });
}

fn ui(c: &mut Criterion) {
    let boxes: MarkBoxes = (0..100)
        .map(|i| (i, [0.01 * i as f64, 0.1, 0.01 * i as f64 + 0.01, 0.2]))
        .collect();
    c.bench_function("ui/parse_answer", |b| {
        b.iter(|| {
            UiAnswer::parse(black_box(
                "Coordinate: (0.17, 0.43). Mark: 3. Coordinate: (0.31, 0.43). Mark: 4.",
            ))
            .unwrap()
        })
    });
    c.bench_function("ui/resolve_click", |b| {
        b.iter(|| {
            resolve_click(
                black_box("Coordinate: (0.04, 0.12). Mark: 12"),
                &boxes,
                1920,
                1080,
            )
            .unwrap()
        })
    });
    c.bench_function("ui/aitw_parse", |b| {
        b.iter(|| {
            AitwAction::parse(black_box(
                r#"{"TAP": {"NORMALIZED_COORDINATE": [0.54, 0.88]}}"#,
            ))
            .unwrap()
        })
    });
}

fn traces(c: &mut Criterion) {
    let traces: Vec<MarkTrace> = (1..=5)
        .map(|id| MarkTrace {
            id,
            start: GridPoint::new(10 * id as i32, 20),
            future: (0..16)
                .map(|s| GridPoint::new(10 * id as i32 + s, 20 + s))
                .collect(),
        })
        .collect();
    let text = tom::format_answer(&traces, true);
    c.bench_function("tom/format_5x16", |b| {
        b.iter(|| tom::format_answer(black_box(&traces), true))
    });
    c.bench_function("tom/parse_5x16", |b| {
        b.iter(|| tom::parse_answer(black_box(&text)).unwrap())
    });
}

criterion_group!(benches, robot, ui, traces);
criterion_main!(benches);
