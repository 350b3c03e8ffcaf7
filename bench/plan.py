"""How big and how often: the full run (`python -m bench`) and the smoke run of the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    reps: int = 5  # timed repetitions of each contender; medians are reported
    warm_up: bool = True  # one uncounted run of each contender first
    decode_mib: float = 40.0  # benchmark 1: the final frame (10 images of ~4 MiB base64)
    paced_mb_per_s: int = 50  # benchmark 1, paced variant: a fast link (400 Mbit/s)
    sdk_mib: float = 8.0  # benchmark 1c: the official SDK is quadratic, so a smaller frame
    sdk_reps: int = 3
    memory_mib: float = 40.0  # benchmark 2
    memory_reps: int = 3  # one fresh subprocess per measurement
    load_reps: int = 10  # benchmark 3: fresh interpreters, alternating
    e2e_n: int = 4  # benchmark 4
    e2e_size: str = "1024x1024"
    e2e_reps: int = 7  # its cells are short and the display noisy: a few more
    bg_reps: int = 15  # benchmark 6: cells of a few ms, timed in one kernel
    scaling_mib: tuple[float, ...] = (1.0, 4.0, 16.0, 40.0)  # benchmark 5
    sweep_runs: int = 64  # benchmark 7: a sweep of this many seeds at zero latency
    sweep_size: str = "256x256"  # benchmarks 7 and 8
    sweep_concurrency: int = 8  # benchmarks 7 and 8
    sweep_reps: int = 9  # benchmark 7: sweeps of ~0.3 s, four contenders: a few more
    latency_runs: int = 32  # benchmark 8
    latency_seconds: float = 1.0  # benchmark 8: the server's latency
    latency_reps: int = 3  # benchmark 8: each sweep takes >= 4 s
    sweep_memory_runs: tuple[int, int] = (10, 100)  # benchmark 9: the small and big sweep
    sweep_memory_size: str = "1024x1024"
    flat_memory_runs: tuple[int, int] = (100, 1000)  # benchmark 9b: noise, concurrency 8
    flat_memory_size: str = "256x256"
    notebook_runs: int = 1000  # benchmark 14: the sweep of an executed, saved notebook
    notebook_size: str = "256x256"
    dry_runs: tuple[int, int] = (100, 10_000)  # benchmark 15: a sweep's --dry-run
    dry_reps: int = 5
    replay_n: int = 10  # benchmark 10: a stored cell of this many images
    replay_size: str = "1024x1024"
    store_n: int = 4  # benchmark 11: a cell with the store on vs off
    store_size: str = "1024x1024"
    store_reps: int = 9  # benchmark 11: a ratio near 1 in noise: a few more
    sdks_n: int = 4  # benchmark 13: one generation through us and through the SDKs
    sdks_size: str = "1024x1024"
    sdks_reps: int = 15  # benchmark 13: calls of ~0.1 s, a ratio near 1 in noise

    @classmethod
    def smoke(cls) -> Plan:
        """Every benchmark once at a tiny size: does the suite run? (No timing claims.)"""
        return cls(
            reps=1,
            warm_up=False,
            decode_mib=1.0,
            sdk_mib=0.25,
            sdk_reps=1,
            memory_mib=1.0,
            memory_reps=1,
            load_reps=1,
            e2e_n=1,
            e2e_size="256x256",
            e2e_reps=1,
            bg_reps=1,
            scaling_mib=(0.25, 0.5, 1.0),
            sweep_runs=4,
            sweep_concurrency=2,
            sweep_reps=1,
            latency_runs=4,
            latency_seconds=0.2,
            latency_reps=1,
            sweep_memory_runs=(1, 2),
            sweep_memory_size="256x256",
            flat_memory_runs=(2, 4),
            flat_memory_size="64x64",
            notebook_runs=4,
            notebook_size="64x64",
            dry_runs=(2, 20),
            dry_reps=1,
            replay_n=1,
            replay_size="256x256",
            store_n=1,
            store_size="256x256",
            store_reps=1,
            sdks_n=1,
            sdks_size="256x256",
            sdks_reps=1,
        )

    @property
    def stream_sizes(self) -> set[float]:
        """Every final-frame size some benchmark reads from the loopback server."""
        return {self.decode_mib, self.sdk_mib, self.memory_mib, WARM_UP_MIB, *self.scaling_mib}


WARM_UP_MIB = 0.25  # a small stream that loads everything a reader imports on first use
