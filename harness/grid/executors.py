"""Where cells run: in this process, on N local workers (one GPU each), or via submitit.

Every executor calls :func:`harness.train.cell_runner.run_cell` for each
cell; a job receives the cell's resolved config as JSON, the store path and
the runner's options. Local worker processes die with their parent (the kernel
sends them :data:`RUNNER_DIED`, taken as one SIGTERM however often it comes, so
each stops at its next step with a checkpoint), run in their own process group,
and get the parent's SIGINT/SIGTERM forwarded once: each stops at a step with a
checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from harness.config import Cell
from harness.config import CellConfig
from variants.spec import ModelSpec
from harness.processes import child_of_this_process
from harness.train import interrupt
from harness.train.cell_runner import RunOptions

#: a local worker's parent-death signal: not SIGTERM itself, because the kernel sends it once
#: for every thread of the dying runner (each hands the worker to the next), and a second
#: SIGTERM would stop the worker at once, without the checkpoint of its last step
RUNNER_DIED = signal.SIGUSR1


def cell_to_json(cell: Cell) -> str:
    """What a job needs to run a cell: its id, names, resolved config and the model spec
    that config resolved to when the grid was expanded."""
    return json.dumps({"cell_id": cell.cell_id, "grid": cell.grid, "name": cell.name,
                       "labels": cell.labels, "config": cell.resolved(),
                       "spec": cell.spec.model_dump(mode="json")})


def cell_from_json(text: str) -> Cell:
    d = json.loads(text)
    return Cell(cell_id=d["cell_id"], grid=d["grid"], name=d["name"], labels=d["labels"],
                config=CellConfig.model_validate(d["config"]), spec=ModelSpec.model_validate(d["spec"]))


def run_cell_job(cell_json: str, store_path: str, run_root: str, options_json: str = "") -> str:
    """Entry point of a job (submitit, a worker process): run one cell.

    The job gets the cell's resolved config and model spec, not the grid file, so editing the
    grid (or the code's defaults or variant presets) while a grid runs cannot change what a
    queued job trains.
    SIGINT/SIGTERM stop it at a step with a checkpoint: it returns ``interrupted``.
    """
    from harness.train import distributed
    from harness.train.cell_runner import run_cell
    from harness.devices import select_device

    cell = cell_from_json(cell_json)
    _export_submitit_ranks()
    dist = distributed.from_env()
    distributed.init(dist, select_device(cell.config.train.device, dist.local_rank).type)
    try:
        with interrupt.handling():
            return run_cell(cell, Path(store_path), Path(run_root), dist, RunOptions.from_json(options_json))
    except interrupt.Interrupted as e:
        print(f"cell {cell.cell_id}: {e.describe()}", file=sys.stderr, flush=True)
        return "interrupted"
    finally:
        distributed.shutdown(dist)


def job_main(argv: list[str]) -> int:
    """``python -c`` entry of a local worker process: prints ``STATUS <status>`` (nowhere, and
    without a traceback, when the runner that reads it has died)."""
    interrupt.stop_once_on(RUNNER_DIED, f"worker {os.getpid()}: its runner died; stopping after "
                                        f"the current step with a checkpoint")
    status = run_cell_job(*argv)
    try:
        print("STATUS", status, flush=True)
    except BrokenPipeError:  # the runner is gone; the store has the status
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nor a second error when Python flushes at exit
        os.close(devnull)
    return 0


def _export_submitit_ranks() -> None:
    """In a submitit job with several tasks (one per GPU), set RANK/WORLD_SIZE/MASTER_* for torch."""
    try:
        import submitit

        env = submitit.JobEnvironment()
    except (ImportError, RuntimeError):
        return  # not a submitit job
    if env.num_tasks > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@dataclass
class LocalExecutor:
    """Cells one after another in this process, or ``workers`` subprocesses each on its own GPU."""

    workers: int = 1
    gpus: Optional[list[int]] = None
    options: RunOptions = field(default_factory=RunOptions)

    def run(self, cells: list[Cell], store_path: Path, run_root: Path,
            report: Callable[[Cell, str], None]) -> dict[str, str]:
        if self.workers <= 1:
            from harness.train.cell_runner import run_cell

            out = {}
            for c in cells:
                out[c.cell_id] = run_cell(c, store_path, run_root, options=self.options)
                report(c, out[c.cell_id])
            return out
        return self._parallel(cells, store_path, run_root, report)

    def _parallel(self, cells, store_path, run_root, report) -> dict[str, str]:
        import queue

        slots: "queue.Queue[int]" = queue.Queue()
        devices = self.gpus if self.gpus is not None else list(range(self.workers))
        for d in devices[: self.workers]:
            slots.put(d)
        live: set[subprocess.Popen] = set()
        guard = threading.Lock()
        stopping = threading.Event()

        def one(c: Cell) -> Optional[str]:
            gpu = slots.get()
            try:
                with guard:
                    if stopping.is_set():  # interrupted before this cell started
                        return None
                    env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu))
                    # CPU workers share the cores instead of each taking all of them
                    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.workers)))
                    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
                        env.pop(k, None)
                    code = "import sys; from harness.grid.executors import job_main; sys.exit(job_main(sys.argv[1:]))"
                    # its own process group: a terminal's Ctrl-C reaches it once, forwarded below
                    proc = subprocess.Popen([sys.executable, "-c", code, cell_to_json(c), str(store_path),
                                             str(run_root), self.options.to_json()], env=env,
                                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                                            preexec_fn=child_of_this_process(RUNNER_DIED))
                    live.add(proc)
                stdout, _ = proc.communicate()
                with guard:
                    live.discard(proc)
                lines = [ln for ln in stdout.splitlines() if ln.startswith("STATUS ")]
                status = lines[-1].split()[1] if lines else f"failed (worker exit {proc.returncode})"
            finally:
                slots.put(gpu)
            report(c, status)
            return status

        def forward(signum: int) -> None:
            with guard:
                stopping.set()
                for proc in live:
                    if proc.poll() is None:
                        proc.send_signal(signum)

        pool = ThreadPoolExecutor(max_workers=self.workers)
        futures = {c.cell_id: pool.submit(one, c) for c in cells}
        try:
            return {k: f.result() for k, f in futures.items()}
        except interrupt.Interrupted as e:
            forward(e.signum)
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except interrupt.Interrupted as again:  # a second signal: the workers stop at once
                forward(again.signum)
                pool.shutdown(wait=True, cancel_futures=True)
                raise again from None
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class SubmititExecutor:
    """One submitit job per cell, or one job array; ``cluster='local'`` runs them as local processes.

    With ``tasks_per_node`` > 1 in the parameters each task is one rank of a
    DistributedDataParallel run (one task per GPU), as under torchrun.
    """

    cluster: str = "slurm"            # slurm | local | debug
    folder: Optional[Path] = None
    array: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    options: RunOptions = field(default_factory=RunOptions)

    def run(self, cells: list[Cell], store_path: Path, run_root: Path,
            report: Callable[[Cell, str], None]) -> dict[str, str]:
        import submitit

        folder = self.folder or Path(run_root) / "submitit"
        ex = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster)
        params = {"timeout_min": 24 * 60, **self.parameters}
        if self.cluster == "slurm" and "slurm_array_parallelism" not in params and self.array:
            params["slurm_array_parallelism"] = len(cells)
        ex.update_parameters(**params)
        args = [(cell_to_json(c), str(store_path), str(run_root), self.options.to_json()) for c in cells]
        if self.array:
            jobs = ex.map_array(run_cell_job, *zip(*args))
        else:
            jobs = [ex.submit(run_cell_job, *a) for a in args]
        out = {}
        for c, job in zip(cells, jobs):
            try:
                status = job.results()[0]  # rank 0's status when the job has one task per GPU
            except Exception as e:  # the job itself died (not a cell failure, which run_cell records)
                status = f"failed (job {job.job_id}: {type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''})"
            out[c.cell_id] = status
            report(c, status)
        return out


def make_executor(name: str, workers: int = 1, array: bool = False,
                  parameters: Optional[dict[str, Any]] = None, options: RunOptions = RunOptions()) -> Any:
    if name == "local":
        return LocalExecutor(workers=workers, options=options)
    if name in ("submitit-local", "slurm", "submitit-debug"):
        cluster = {"submitit-local": "local", "slurm": "slurm", "submitit-debug": "debug"}[name]
        return SubmititExecutor(cluster=cluster, array=array, parameters=dict(parameters or {}),
                                options=options)
    raise ValueError(f"unknown executor {name!r}; allowed: local, submitit-local, slurm, submitit-debug")
