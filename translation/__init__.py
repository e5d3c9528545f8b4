"""Finnish->English encoder-decoder Transformer written from scratch."""

from shared_utils.runtime import quiet_optional_extensions

quiet_optional_extensions()
