"""Ray Tune execution: every job a stage hands out is a Tune trial.

One helper, `run_tune`, runs any `JobFeed` (`search_spaces.infra.jobs`): the search's children
(asked from the strategy as slots free up) and NetAdapt's batches of proposals. The
feed sits behind a Tune `Searcher`, so results come back to the driver, where the
latency model, the strategy and the logs live; Tune only schedules. The same
experiment runs on a laptop (a local Ray) or a cluster (`ray.address`).

Ray Tune checkpoints its own state only periodically, so resume does not use
`Tuner.restore`: the run's logs (trials.csv, proposals.csv) are replayed instead.

`ray` is imported inside the functions that use it: it takes seconds, its settings
(environment variables) must be in place first, and commands that run no trial
(`nas info`, `validate`, `report`, the inline executor) never pay for it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from nas.search.core import SearchCore, SearchFeed
from search_spaces.infra.jobs import (Executor, Job, JobFeed, JobList, JobResult, OnResult, Step,
                           inline_executor, run_guarded)
from search_spaces.infra.checks import positive
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_write
from search_spaces.infra.threads import available_cpus


@dataclass
class RayConfig:
    """`ray:` where and how wide trials run."""

    address: str | None = None  # absent: start a local Ray; `auto` or host:port: join
    cpus_per_trial: float = field(default=1.0, metadata={"check": positive})
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = field(default=None, metadata={"check": positive})
    num_cpus: int | None = field(default=None, metadata={"check": positive})  # local Ray only


def _import_tune() -> Any:
    # The classic reporter, silent at verbose=0: progress is our one line per trial.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C stops the command (one line, `nas resume` continues), not just Tune's trials
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    from ray import tune
    from ray.tune.search import Searcher

    return tune, Searcher


def make_searcher(feed: JobFeed) -> Any:
    """A `ray.tune.search.Searcher` that asks `feed` for jobs and gives it results.

    An exception from the feed (say, `SearchFailed`) ends the suggestions; `run_tune`
    raises it once the running trials are done."""
    _, Searcher = _import_tune()

    class FeedSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__()  # no Tune metric: the feed scores results itself
            self.live: dict[str, Job] = {}
            self.completed = 0
            self.error: BaseException | None = None

        def suggest(self, trial_id: str) -> dict | str | None:
            try:
                if self.error is None and not feed.exhausted():
                    job = feed.next_job()
                    if job is None:
                        return None  # every free slot's job is running; wait for one
                    self.live[trial_id] = job
                    return {"job": job.to_dict()}
            except Exception as err:
                self.error = err
            return Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            job = self.live.pop(trial_id, None)
            if job is None:
                return
            if result is None or error:
                outcome = JobResult(None, "the Ray trial crashed (see its log in ray/)")
            else:
                outcome = JobResult(result.get("accuracy"), result.get("error", ""),
                                    result.get("wall_s", 0.0), result.get("images_per_s"))
            self.completed += 1
            try:
                feed.record(job, outcome)
            except Exception as err:
                self.error = err

        def save(self, checkpoint_path: str) -> None:
            # The run's logs are the truth; this snapshot only serves Tune's own restore.
            with open(checkpoint_path, "w") as fh:
                json.dump({"completed": self.completed}, fh)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path) as fh:
                state = json.load(fh)
            if state["completed"] != self.completed:
                raise RuntimeError("Tune restored a searcher out of step with the run's log")

    return FeedSearcher()


def _trainable(config: dict, step: Step) -> None:
    tune, _ = _import_tune()
    import ray

    result = run_guarded(step, Job.from_dict(config["job"]))
    # the node is in Tune's result.json of the trial: on a cluster, where it ran
    tune.report({"accuracy": result.accuracy, "error": result.error,
                 "wall_s": result.wall_s, "images_per_s": result.images_per_s,
                 "node_id": ray.get_runtime_context().get_node_id()})


def run_tune(feed: JobFeed, step: Step, cfg: RayConfig, storage: Path, name: str) -> None:
    """Every job of `feed` as a Ray Tune trial (experiment `name` under `storage`), as
    many side by side as the cluster's CPUs (or `ray.max_concurrent_trials`) allow."""
    tune, _ = _import_tune()
    concurrent = _concurrency(cfg, storage)
    searcher = make_searcher(feed)
    # with_parameters ships the step (and the data it holds) through the object store
    # once, instead of pickling it into every trial.
    trainable = tune.with_parameters(_trainable, step=step)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                    max_concurrent_trials=concurrent, reuse_actors=True,
                                    # Tune's default folder name spells out the whole
                                    # job (the Arch), past what a file name may hold
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(storage_path=str(storage.resolve()), name=name, verbose=0),
    )
    tuner.fit()
    if searcher.error is not None:
        raise searcher.error


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _concurrency(cfg: RayConfig, storage: Path) -> int:
    """Trials side by side: `ray.max_concurrent_trials`, or as many as the CPUs hold."""
    import ray

    _init_ray(cfg, storage)
    total_cpus = ray.cluster_resources().get("CPU", 1)
    return cfg.max_concurrent_trials or max(1, int(total_cpus // cfg.cpus_per_trial))


DRIVER_FILE = "driver.json"  # in the run's ray/: the local Ray this run started


def check_address(cfg: RayConfig, source: str) -> None:
    """`ray.address: host:port` answers (a TCP connect, 5 s): Ray itself waits minutes
    before it gives up on an address where nothing listens, so this runs first."""

    if not cfg.address or cfg.address == "auto":
        return
    host, sep, port = cfg.address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"ray.address: expected auto or host:port, got {cfg.address!r}", source)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"ray.address: nothing answers at {cfg.address} ({err.strerror or err}"
                        f"); is `ray start --head` running there?", source) from None


def _init_ray(cfg: RayConfig, storage: Path) -> None:
    """Join `ray.address`, or start a local Ray for this run and note it in
    `storage/driver.json`, after stopping what a killed driver of the run left."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False,
                              "log_to_driver": False}
    if cfg.address:  # a cluster's processes are not ours to stop
        try:
            with _stderr_to(storage / "driver.log"):
                ray.init(address=cfg.address, **kwargs)
        except Exception as err:  # refused, unreachable, bad token: Ray's own types
            raise UserError(_join_failure(cfg.address, err, storage)) from None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        print(f"ray: joined the cluster at {cfg.address}: {len(nodes)} node(s), "
              f"{ray.cluster_resources().get('CPU', 0):g} CPUs", file=sys.stderr, flush=True)
        return
    reap_orphans(storage)
    # Ray starts its workers at nice 15 by default, so on a busy machine a trial gets a
    # sliver of a core: they run at the driver's niceness unless the user says otherwise
    os.environ.setdefault("RAY_worker_niceness", str(os.nice(0)))
    # Without ray.address a run starts its own local Ray, on purpose: an inherited
    # RAY_ADDRESS or another Ray on a shared machine is not joined by accident.
    inherited = os.environ.get("RAY_ADDRESS")
    with _stderr_to(storage / "driver.log"):
        ray.init(address="local", num_cpus=cfg.num_cpus or available_cpus(), **kwargs)
    if inherited:
        print(f"ray: started a local Ray for this run; RAY_ADDRESS={inherited} in the "
              f"environment is not joined (set ray.address to join a cluster)",
              file=sys.stderr, flush=True)
    try:
        from ray._private import worker  # the session folder has no public accessor

        session = worker.global_worker.node.get_session_dir_path()
    except Exception:  # pragma: no cover - another Ray version: nothing to clean up later
        return
    atomic_write(storage / DRIVER_FILE, json.dumps({"pid": os.getpid(), "session": session}))


def _join_failure(address: str, err: Exception, storage: Path) -> str:
    """One line for a failed join. Ray raises a generic "failed to connect" for a
    refused token too; the reason is only in its log, so the log is read for it."""
    log = storage / "driver.log"
    try:
        refused = "InvalidAuthToken" in log.read_text(errors="replace")
    except OSError:
        refused = False
    if refused:
        why = ("the cluster refused this driver's token: export RAY_AUTH_MODE=token and "
               "give the driver the head's ~/.ray/auth_token or RAY_AUTH_TOKEN")
    else:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return (f"ray.address: cannot join the Ray cluster at {address} ({why}); see README "
            f"'On a Ray cluster' and {log}; once fixed: nas resume {storage.parent}")


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Ray's own notices while it starts (token authentication, its processes' start-up
    chatter) go to the run's `ray/driver.log`, not between the progress lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def session_pids(session: str) -> list[int]:
    """Live processes (not this one) with a file open in Ray session folder `session`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(session + os.sep)
                   for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to look at
            continue
    return found


def reap_orphans(storage: Path) -> list[int]:
    """Stop the processes of the local Ray that a killed driver of this run started
    (a `kill -9`'d driver leaves Ray's agents behind): those with a file open in its
    session folder, while that driver is gone. Linux only (/proc); returns their pids."""
    record = storage / DRIVER_FILE
    proc = Path("/proc")
    try:
        info = json.loads(record.read_text())
        pid, session = int(info["pid"]), str(info["session"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if pid == os.getpid() or (proc / str(pid)).exists() or not proc.is_dir():
        return []  # its driver still runs (or this is it): not orphans
    found = session_pids(session)
    for orphan in found:
        try:
            os.kill(orphan, signal.SIGKILL)
        except OSError:
            pass
    record.unlink(missing_ok=True)
    return found


def run_ray(core: SearchCore, step: Step, seed: int, cfg: RayConfig, storage: Path) -> None:
    """The search's remaining children as Ray Tune trials, told in trial-id order."""
    run_tune(SearchFeed(core, seed, _concurrency(cfg, storage)), step, cfg, storage, "tune")


def ray_executor(step: Step, cfg: RayConfig, storage: Path, stage: str = "netadapt"
                 ) -> Executor:
    """Each batch of jobs side by side as Ray Tune trials, one Tune experiment per
    batch, named after the `stage` and the batch's first job."""

    def run(jobs: Sequence[Job], on_result: OnResult) -> None:
        # the time keeps a resumed batch's name fresh
        batch = jobs[0].name.split("/")[0] if jobs else "jobs"
        run_tune(JobList(jobs, on_result), step, cfg, storage,
                 f"{stage}_{batch}_{time.strftime('%H%M%S')}")

    return run


def make_executor(kind: str, step: Step, cfg: RayConfig, storage: Path,
                  stage: str = "netadapt") -> Executor:
    """`search.executor`'s executor: `inline` (one job after another in this process)
    or `ray` (each batch of jobs side by side as Ray Tune trials)."""
    return inline_executor(step) if kind == "inline" else ray_executor(step, cfg, storage,
                                                                        stage)
