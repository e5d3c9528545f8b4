"""Post-training INT8 quantization from scratch, bitsandbytes 8-bit/4-bit, and the precision benchmark."""

from shared_utils.runtime import quiet_optional_extensions

quiet_optional_extensions()
