"""Which dtype a run uses for a requested ``precision`` on a device (no framework import)."""

from __future__ import annotations

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "auto": "auto"}


def resolve_dtype(precision: str, device: str, native_bf16: bool) -> tuple[str, str | None]:
    """The dtype name to load with ("bfloat16", "float16", "float32" or "auto"), and a warning when
    the request was changed.

    Rule on CPU: fp16 runs as fp32 (CPU half-precision kernels are emulated or missing); bf16 runs
    as bf16 only when the CPU has native bf16 instructions (AVX512-BF16/AMX on x86, BF16 on Arm),
    else as fp32."""
    if device == "cpu" and (precision == "fp16" or (precision == "bf16" and not native_bf16)):
        why = "fp16 is not native on CPUs" if precision == "fp16" else "this CPU has no native bf16"
        return (
            "float32",
            f"precision={precision} ran as fp32 on CPU ({why}); set precision=fp32 to silence",
        )
    return DTYPE_NAMES[precision], None
