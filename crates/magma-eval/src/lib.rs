//! Benchmark metrics and the evaluation runner.
