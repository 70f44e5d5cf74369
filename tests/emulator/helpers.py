"""Constants shared by the emulator tests."""

from __future__ import annotations

# The docs' own example run; its _1 file is ~3 MiB, crossing the 1 MiB content blocks.
FASTQ_1 = "vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz"
