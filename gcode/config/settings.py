"""Every setting of gcode, declared once: type, default, bounds or choices, help, and where it
sits in a config file. The configs of ``gcode.fit`` are these classes; ``gcode train``'s flags,
the TOML/YAML schema (:mod:`gcode.config.sections`), validation (:mod:`gcode.config.rules`) and
docs/API.md are derived from them.

A setting's name is its field name here (Ray Train's, for the configs Ray Train has). Its flag is
``--`` + the name with dashes, after its group's prefix (``inject-``, ``checkpoint-``, ``log-``);
a dict setting takes ``--NAME-param KEY=VALUE`` (repeatable); a boolean that defaults to true
takes ``--no-NAME``. ``aliases``/``flags`` list the older spellings that still work.

Choices that other packages own are read from them when a value is checked (:class:`Lazy`):
scheme names from :data:`gcode.codes.SCHEMES`, policies from :data:`gcode.sim.policy.POLICIES`,
datasets from :data:`gcode.train.presets.DATASETS`, delay models from
:data:`gcode.stragglers.registry.MODELS`. This module imports neither them nor torch nor Ray.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field

from .spec import Lazy, setting

# ---- what the machine can do: every number is bounded, each bound stated once --------------
#: workers: a scheme's work per round is O(n) numpy (10,000 workers x 1,000 rounds simulate in
#: about a second); jobs: with n, the (rounds x n) float64 table of injected delays
MAX_WORKERS = 100_000
MAX_JOBS = 10_000_000
MAX_DELAY_TABLE_BYTES = 1 << 30
#: waits: poll() and friends take at most 2^31 - 1 milliseconds (24.8 days)
MAX_WAIT_S = 1_000_000
WAIT_WHY = "about 11.6 days; longer waits overflow the system's timers"
#: learning rates: Adam's first step is lr / (1 - beta1) = 10 lr, and float32 ends at 3.4e38
MAX_LR = 1e6
#: factors and slopes (mu, gap, time_scale, load_slope): beyond this a product with a round's
#: seconds is no longer a time a run can wait
MAX_FACTOR = 1e6
MAX_SEED = 2**63 - 1
MAX_CPUS = 1_000_000
MAX_GPUS_PER_WORKER = 1024
MAX_COUNT = 1_000_000  # restarts, threads, checkpoints kept
MAX_BATCH = 2**31 - 1  # samples index a dataset with 32-bit offsets in places
MAX_SAMPLES = 2**40

SCHEMES = Lazy("gcode.codes", "SCHEMES", extra=("auto",))
POLICIES = Lazy("gcode.sim.policy", "POLICIES")
GC_CODES = Lazy("gcode.codes.gc", "GC_CODE_KINDS")
DATASETS = Lazy("gcode.train.presets", "DATASETS", heavy=True)
OPTIMIZERS = Lazy("gcode.train.optim", "OPTIMIZERS", heavy=True)
DELAY_MODELS = Lazy("gcode.stragglers.registry", "MODELS")
DEVICES = ("auto", "cpu", "cuda")
#: where a job's coded gradients are summed (gcode.runtime.collective for "collective")
DATA_PLANES = ("star", "collective")
#: the misbehaviours a worker can be told to show in one round (tests of fault tolerance)
FAULT_KINDS = ("raise", "exit", "kill", "shape", "nan", "tag")


def group(section: str, prefix: str = ""):
    """Class decorator: the file section and flag prefix of the settings a class declares
    (a field's own ``section`` wins)."""
    def mark(cls):
        cls.__gcode_section__, cls.__gcode_prefix__ = section, prefix
        return cls
    return mark


@group(section="scheme")
@dataclass
class CodingConfig:
    """The coding scheme and the rule that ends a round (``gcode simulate``'s flags too)."""

    scheme: str = setting(
        "auto", "the coding scheme: uncoded (wait for all); ignore (the fastest n-s, rescaled: "
        "an APPROXIMATION); gc (gradient coding, T=0); srsgc (selective-repeat SGC, T=B); msgc "
        "(multiplexed SGC, T=W-2+B, the lowest load); auto (an online tuner picks scheme, "
        "parameters and round-ending policy from the rounds seen so far, switching at job "
        "boundaries). auto trains ONE model: it chooses among T=0 schemes (uncoded, GC) unless "
        "run.models=M > 1 (then SR-SGC and M-SGC with T <= min(M-1, 1) too, each of the M "
        "models getting 1/M of the steps) or mode 'delayed' (one model, gradients up to one "
        "round stale)",
        key="name", choices=SCHEMES)
    s: int | None = setting(None, "gc/ignore: stragglers tolerated in every round",
                            default_text="1 (0 with one worker)")
    B: int | None = setting(None, "srsgc/msgc: a worker straggles in bursts of at most B rounds",
                            ge=1, default_text="1")
    W: int | None = setting(None, "srsgc/msgc: window length in rounds, W > B", default_text="2")
    lam: int | None = setting(None, "srsgc/msgc: at most lam distinct stragglers per window "
                                    "(<= workers)", default_text="min(2, workers)")
    gc_code: str | None = setting(
        None, "the gradient code inside gc/srsgc/msgc: group (certified; fr when that costs at "
        "most 3% of load, else load (s+1)/n with fp64 messages), cyclic (the paper's, load "
        "(s+1)/n; checked per decode set beyond small n, fp64) or fr (fractional repetition: "
        "exact in fp32, streams in decode, load 1/floor(n/(s+1)))", choices=GC_CODES,
        default_text="group (gcode.codes.DEFAULT_GC_CODE); auto: fr")
    policy: str | None = setting(
        None, "how a round ends: paper = cut at (1+mu) x the fastest arrival; partial = the "
        "same cut, but a violation waits only until the missing workers conform; earliest = no "
        "cut, end as soon as the missing workers conform (GC: the (n-s)-th arrival); gap = end "
        "once no worker has arrived for gap x the latest arrival's time and the missing workers "
        "conform; deadline = cut at deadline seconds; all = wait for every worker. When the "
        "stragglers at the cut break the scheme's model, the round waits for all ('waits'). "
        "With scheme auto: paper restricts the tuner to the paper policy; partial or unset "
        "lets it pick among earliest, partial, paper and gap",
        section="policy", key="name", choices=POLICIES,
        default_text="paper; with scheme auto, the tuner's pick")
    mu: float = setting(1.0, "paper/partial: a worker straggles when slower than (1+mu) x the "
                             "round's fastest", section="policy", gt=0, le=MAX_FACTOR)
    gap: float = setting(0.05, "gap policy: the quiet time that ends a round, as a fraction of "
                               "the latest arrival's time since dispatch",
                         section="policy", gt=0, le=MAX_FACTOR, metavar="FRACTION")
    deadline: float | None = setting(None, "deadline policy: seconds after dispatch",
                                     section="policy", gt=0, le=MAX_WAIT_S, why=WAIT_WHY,
                                     aliases=("deadline_s",), metavar="SECONDS")
    load_slope: float | None = setting(
        None, "auto: seconds per unit of normalized load the tuner assumes when it compares "
        "schemes", ge=0, le=MAX_FACTOR, aliases=("auto_load_slope",), metavar="SECONDS",
        default_text="measured live, round by round")


@group(section="cluster")
@dataclass
class ScalingConfig:
    """Where the workers run (Ray) and what each gets. A config file's [cluster] section."""

    workers: int = setting(4, "worker actors n", ge=1, le=MAX_WORKERS, metavar="N")
    gpus_per_worker: float = setting(
        0.0, "GPUs each worker reserves; a fraction shares a GPU (0.125: 8 workers on one GPU); "
        "> 0 puts each worker's model and batches on its GPU", ge=0, le=MAX_GPUS_PER_WORKER,
        metavar="G", resume_safe=True)
    cpus_per_worker: float | None = setting(
        None, "CPUs each worker actor reserves", gt=0, le=MAX_CPUS, aliases=("worker_cpus",),
        flags=("--worker-cpus",), resume_safe=True,
        default_text="share the free CPUs, min(1, free/n); 1 on a cluster with no free CPU yet, "
                     "so that an autoscaler adds nodes instead of packing actors onto one")
    address: str | None = setting(None, "a Ray cluster to join: HOST:PORT, ray://HOST:PORT or "
                                        "auto", resume_safe=True,
                                  metavar="HOST:PORT",
                                  default_text="start a local loopback-only Ray instance")
    num_cpus: int | None = setting(None, "CPUs of the local Ray instance", ge=1, le=MAX_CPUS,
                                   default_text="all cores", resume_safe=True)
    placement: str = setting("spread", "spread: workers round-robin over nodes; pack: Ray's "
                                       "default placement", choices=("spread", "pack"),
                             resume_safe=True)
    max_restarts: int = setting(3, "restarts of a worker actor after a crash", ge=0,
                                le=MAX_COUNT, resume_safe=True)
    round_timeout_s: float = setting(120.0, "a round (retries included) longer than this ends "
                                            "the run", gt=0, le=MAX_WAIT_S, why=WAIT_WHY,
                                     metavar="SECONDS", resume_safe=True)
    startup_timeout_s: float = setting(180.0, "worker actors must be ready within this", gt=0,
                                       le=MAX_WAIT_S, why=WAIT_WHY, metavar="SECONDS",
                                       resume_safe=True)
    coordinator_device: str = setting(
        "auto", "where the coordinator keeps its models and decodes (fp64): auto uses a GPU "
        "when this process sees one", choices=DEVICES, resume_safe=True)
    decode_device: str = setting(
        "auto", "where jobs decode in fp64: auto follows coordinator_device; cpu decodes "
        "results where they arrive (host memory) with decode_threads", choices=DEVICES,
        resume_safe=True)
    decode_threads: int | None = setting(None, "host threads for the fp64 decode", ge=1,
                                         le=MAX_COUNT, metavar="K", resume_safe=True,
                                         default_text="the cores the local workers leave, at most 4")
    transport: str = setting(
        "auto", "how each round's calls and arrays move: shm (a Unix socket per worker and "
        "shared memory; workers on this node only), ray (actor calls and the object store; any "
        "cluster), auto (shm when every worker is on this node, else ray)",
        choices=("auto", "shm", "ray"), resume_safe=True)
    data_plane: str = setting(
        "star", "where a job's gradient is summed: star (every coded gradient travels to the "
        "coordinator, which decodes in fp64 and steps the models; best on one node) or "
        "collective (every worker holds replicas of the M models; each scales its coded "
        "results by the coefficients the coordinator sends and the workers allreduce over "
        "torch.distributed, gloo on CPUs, NCCL with a GPU each; no gradient passes through "
        "the coordinator, so a round costs what an allreduce costs: for many workers)",
        choices=DATA_PLANES)
    zero: int = setting(
        0, "the collective plane's optimizer state: 0, every worker steps its replicas' whole "
        "optimizers; 1 (ZeRO-1), each worker keeps 1/n of every optimizer's state: the "
        "decoded sum is reduce-scattered, each worker steps its shard, the parameters are "
        "all-gathered (element-wise optimizers only: SGD, Adam, AdamW, RMSprop, Adagrad, ...)",
        ge=0, le=1, metavar="0|1", resume_safe=True)
    prefetch: str = setting(
        "auto", "workers read the samples of their next task on a background thread while "
        "computing the current one: on, off, or auto (on for GPU workers, whose GPU would "
        "otherwise wait for the CPU)", choices=("auto", "on", "off"), resume_safe=True)
    retry_backoff_s: float = setting(0.25, "pause before re-sending a failed worker's tasks", ge=0,
                                     le=MAX_WAIT_S, why=WAIT_WHY, metavar="SECONDS",
                                     resume_safe=True)

    @property
    def reads_ahead(self) -> bool:
        """Whether workers read ahead: ``prefetch`` on, or auto with GPU workers, whose device
        would otherwise idle while the CPU reads."""
        return self.prefetch == "on" or (self.prefetch == "auto" and self.gpus_per_worker > 0)


@group(section="inject", prefix="inject-")
@dataclass
class InjectConfig:
    """Straggler injection: each worker sleeps per round. ``RunConfig(inject=None)``: none."""

    model: str | None = setting(None, "workers sleep per round following this delay model, with "
                                      "its params (those without a default are required)",
                                choices=DELAY_MODELS, flags=("--inject",), metavar="MODEL")
    params: dict = setting({}, "the delay model's parameters (every missing one is reported at "
                               "once)")
    trace: str | None = setting(None, "replay a trace file (CSV, .npy or .pb): worker i sleeps "
                                      "column i of row r (its first n columns)", metavar="PATH")
    time_scale: float = setting(1.0, "multiply injected times by this (0.4 turns 0.7 s into "
                                     "0.28 s)", gt=0, le=MAX_FACTOR, flags=("--time-scale",),
                              metavar="FACTOR")
    mode: str = setting("add", "add: sleep the injected time after computing (a round takes "
                               "compute + injected, gcode simulate's load term); target: sleep "
                               "only the rest of it", choices=("add", "target"))
    seed: int | None = setting(None, "the delay model's seed", ge=0, le=MAX_SEED,
                               default_text="the run's seed")


@group(section="log", prefix="log-")
@dataclass
class LogConfig:
    """Per-round logs. ``RunConfig(logs=None)``: none."""

    jsonl: str | None = setting(None, "write one JSON record per round (arrivals, stragglers, "
                                      "decodes, loss) to this file", metavar="PATH",
                                resume_safe=True)
    run_log: str | None = setting(None, "write the telemetry run log PREFIX.pb and PREFIX.jsonl "
                                        "(every round's plan and outcome; read it with gcode "
                                        "replay / gcode plot)", metavar="PREFIX",
                                  flags=("--run-log",), resume_safe=True)


@group(section="checkpoint", prefix="checkpoint-")
@dataclass
class CheckpointConfig:
    """Checkpoint and resume of a live run. ``RunConfig(checkpoint=None)``: none."""

    dir: str | None = setting(None, "write the full run state (models, optimizers, scheme, "
                                    "decoder, RNGs) to DIR/round-NNNNNNNN/ every `every` rounds "
                                    "and when a stop request ends the run; atomic (temp folder, "
                                    "fsync, rename), no pickle", metavar="DIR", resume_safe=True)
    every: int = setting(10, "rounds between checkpoints", ge=1, le=MAX_JOBS, metavar="K",
                         resume_safe=True)
    keep: int = setting(2, "newest complete checkpoints kept (older ones are deleted once a "
                           "newer one is complete)", ge=1, le=MAX_COUNT, metavar="N",
                        resume_safe=True)
    resume: str | None = setting(None, "continue the run checkpointed in DIR (its newest "
                                       "checkpoint, or one round-NNNNNNNN folder): its config "
                                       "is used, and only settings that never change what is "
                                       "computed may differ (logs, checkpoints, cluster placement "
                                       "and timeouts, check_decode, eval_every); the final "
                                       "parameters equal an uninterrupted run's",
                                 flags=("--resume",), metavar="DIR", resume_safe=True)


@dataclass(frozen=True)
class Fault:
    """Fault injection (tests): ``worker`` misbehaves in round ``round`` (first attempt only)."""

    round: int = setting(MISSING, "the round", ge=0)
    worker: int = setting(MISSING, "the worker", ge=0)
    kind: str = setting(MISSING, "raise | exit | kill | shape | nan | tag (a wrong round tag)",
                        choices=FAULT_KINDS)


@group(section="train")
@dataclass
class PresetConfig:
    """What ``gcode train`` trains: a preset model, dataset and optimizer (``gcode.fit`` takes
    your own functions instead, and records these names only as ``RunConfig.tags``)."""

    model: str = setting("mlp", "a model preset: logistic, mlp, cnn, resnet18, resnet50 "
                                "(CIFAR-shaped, GroupNorm), charlm (a character transformer) or "
                                "one registered with gcode.train.register_model",
                         default_text="the dataset's: mlp; cifar: resnet18; text: charlm")
    model_params: dict = setting({}, "the model preset's parameters (hidden=128, ...)")
    dataset: str = setting("digits", "a dataset preset: digits (scikit-learn's 8x8 digits); "
                                     "synthetic (Gaussian blobs); cifar (3x32x32 images "
                                     "generated from their index: any size, no memory); "
                                     "diabetes (regression, mean-squared error); text (the "
                                     "bundled text, next-character prediction, for charlm)",
                           choices=DATASETS)
    dataset_params: dict = setting({}, "the dataset preset's parameters (num_features=20, ...)")
    num_samples: int | None = setting(None, "dataset size (digits, diabetes, text: a subset; "
                                            "synthetic, cifar: any)", ge=1, le=MAX_SAMPLES,
                                      default_text="the whole dataset")
    optimizer: str = setting("adam", "the optimizer preset", choices=OPTIMIZERS)
    lr: float = setting(0.01, "the learning rate", gt=0, le=MAX_LR,
                        why="a larger step overflows float32 arithmetic")
    optimizer_params: dict = setting({}, "the optimizer's other parameters (momentum, "
                                         "weight_decay, betas, ...; the learning rate is lr)")


@group(section="train")
@dataclass
class RunConfig:
    """How long to train and what to record. ``inject``, ``checkpoint`` and ``logs`` take
    :class:`InjectConfig`, :class:`CheckpointConfig` and :class:`LogConfig` (or None: none).
    ``exact_blocks=K`` (the canonical-sum mode) makes every scheme and worker count compute the
    same gradient bits, at the cost of batch_size/K backward passes per job and fp64 messages."""

    jobs: int = setting(40, "full gradients to compute; the run takes jobs+T rounds",
                        section="scheme", ge=1, le=MAX_JOBS)
    batch_size: int = setting(256, "samples per job, i.e. per full gradient", ge=1, le=MAX_BATCH)
    seed: int = setting(0, "seeds model init, job batches and injected delays", ge=0, le=MAX_SEED)
    models: int | None = setting(None, "M concurrent models trained round-robin, job t -> model t "
                                       "mod M; T+1 <= M <= max(jobs, T+2)", ge=1, metavar="M",
                                 default_text="T+1 (auto: 1)")
    mode: str = setting("concurrent", "concurrent: M independent models, exact SGD each; "
                                      "delayed: one model, gradients applied T rounds late "
                                      "(APPROXIMATE, staleness T)", choices=("concurrent", "delayed"))
    max_grad_norm: float | None = setting(
        None, "clip each model's decoded mean gradient to this global L2 norm before its "
        "optimizer step (torch's clip_grad_norm_ rule; the norm is taken of the fp64 decoded "
        "gradient, so a coded run clips exactly as the uncoded run)", gt=0, le=MAX_FACTOR,
        metavar="NORM", default_text="no clipping")
    precision: str = setting(
        "fp32", "the workers' forward and backward: fp32, or bf16 (torch.autocast to bfloat16; "
        "parameters, gradients and messages stay fp32 and the decode fp64; see docs/TRAINING.md "
        "for what stays exact)", choices=("fp32", "bf16"))
    exact_blocks: int = setting(
        0, "the canonical-sum mode: 0 = off (one backward pass per task, fp32 messages where the "
        "code allows). K > 0 cuts each job's batch into consecutive blocks of K samples, "
        "allocates every scheme's chunks in whole blocks, runs one backward pass per block and "
        "sums the block gradients in fp64 (messages and decode), rounding the decoded sum to "
        "fp32 once: every scheme, worker count and straggler pattern then gives the same "
        "gradient bits, so coded runs end bit-identical with the uncoded run (bf16 too; costs "
        "batch_size/K backward passes per job and 2x message bytes). batch_size must be a "
        "multiple of K", ge=0, le=MAX_BATCH, metavar="K", default_text="off")
    inject: InjectConfig | None = field(default_factory=InjectConfig)
    checkpoint: CheckpointConfig | None = field(default_factory=CheckpointConfig)
    logs: LogConfig | None = field(default_factory=LogConfig)
    monitor: str | None = setting(None, "serve the Monitor gRPC service at HOST:PORT (follow it "
                                        "with gcode watch HOST:PORT); 127.0.0.1:0 picks a free "
                                        "port; a non-loopback address needs a token",
                                  section="", metavar="HOST:PORT")
    monitor_token: str | None = setting(None, "the bearer token clients of the monitor send",
                                        section="", metavar="TOKEN",
                                        default_text="$GCODE_MONITOR_TOKEN")
    eval_every: int | None = setting(None, "every K rounds, every model's held-out loss (and "
                                           "accuracy for classifiers) in the progress, the final "
                                           "JSON and the run log", ge=1, le=MAX_JOBS,
                                     metavar="K", resume_safe=True, default_text="never")
    check_decode: bool = setting(False, "recompute every decoded gradient directly and report "
                                        "max_decode_rel_error (one extra gradient per job)",
                                 resume_safe=True)
    streaming_decode: bool = setting(True, "fold coefficient-1 results into fp64 accumulators as "
                                           "they arrive")
    pipeline: bool = setting(True, "start round r+1 before round r's decodes and steps when its "
                                   "inputs are final (models >= T+2); the same results either way")
    dispatch: str = setting("round", "when a worker gets its next round's tasks: round, when the "
                                     "round starts; arrival, as soon as its own results of this "
                                     "round arrive, so it never idles until the round's cut "
                                     "(needs pipeline and a scheme whose workers' next tasks "
                                     "follow their own arrivals; exact either way)",
                            choices=("round", "arrival"))
    faults: tuple[Fault, ...] = ()
    #: free-form labels recorded in the run's config, logs and checkpoints: the names of
    #: :class:`PresetConfig` (``gcode train`` records its presets here); a resumed run must
    #: carry the same ones
    tags: dict = field(default_factory=dict)


__all__ = [
    "DATA_PLANES",
    "DEVICES",
    "FAULT_KINDS",
    "MAX_DELAY_TABLE_BYTES",
    "MAX_JOBS",
    "MAX_WORKERS",
    "CheckpointConfig",
    "CodingConfig",
    "Fault",
    "InjectConfig",
    "LogConfig",
    "PresetConfig",
    "RunConfig",
    "ScalingConfig",
    "group",
]
