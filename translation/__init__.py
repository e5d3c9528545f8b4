"""Finnish->English encoder-decoder Transformer written from scratch."""
