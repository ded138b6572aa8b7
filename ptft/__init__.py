"""ptft: pretrain a backbone, then fine-tune it."""
