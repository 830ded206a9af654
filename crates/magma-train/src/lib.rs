//! Fine-tuning Magma (projector, LoRA, QLoRA, full).
