//! Magma's training data: records, converters, curation, jobs.
