# Shared state of the graph: the job (or the batch of jobs), and the functions the rules use.
# One job: `--config job=/abs/job.json`, its files directly in the working directory.
# A batch: `--config batch=/abs/folder`, each job's files in `<job-name>/` of the working directory.
import atexit
import sys
from functools import partial
from pathlib import Path

from snakemake.utils import validate

from va.batch import left_out_line, load_batch, read_selection
from va.comfyui.pool import job_request, resolve_pool
from va.comfyui.workflow import load_workflow
from va.config import load_config
from va.cluster_watch import ClusterWatch, finished_in_attempt
from va.errors import ExitCode
from va.graph import of_wildcards
from va.job import load_job
from va.lifecycle import (
    GraphRun,
    keep_outputs_of_finished_rules,
    stop_idle_rescheduling,
)
from va.lipsync.providers import JOIN_RESOURCES, get_provider
from va.plan import (
    load_plan,
    plan_jobs,
    plan_run,
)
from va.slurm import group_id
from va.rule_settings import rule_settings, settings_json
from va.workdir import Workdir

validate(config, "../config/config.schema.yaml")
# `va run` and `va batch` planned each job once (va.plan.plan_run, its checks included) and wrote its
# plan before Snakemake started (`planned`): the graph loads those plans. A plain `snakemake` plans here,
# with the same function, and writes the plans when the run starts; the process of a cluster job loads
# what its main process wrote.
DRIVES = workflow.exec_mode.name == "DEFAULT"
PLANNED = bool(config.get("planned")) or not DRIVES
PLANS = {}


def folder_of(name):
    """The folder of job ``name`` (the working directory itself for one job)."""
    return Workdir(Path.cwd() / name)


if config.get("batch"):
    # A job that cannot run is left out with one line, as `va batch` does, instead of failing the
    # graph. The graph's own Snakemake (not one running a job of it, on a node), unless `va batch` did
    # it, also checks what each job's folder holds (va.batch.check_made_here) and plans each job whose
    # video is not finished.
    planning = not PLANNED and not config.get("finished_only")
    BATCH = load_batch(
        Path(config["batch"]),
        only=read_selection(Path.cwd()),
        out=Path.cwd() if planning else None,
        folders=Path.cwd(),  # files sharing a name: the one whose run its folder holds keeps it
    )
    if planning:
        unfinished = {
            name: job
            for name, job in BATCH.jobs.items()
            if not Path(name, job.basename).exists()
        }
        PLANS, unplanned = plan_jobs(unfinished, folder_of)
        BATCH.problems.update(unplanned)
        BATCH.jobs = {n: j for n, j in BATCH.jobs.items() if n not in unplanned}
    for name, problem in sorted(BATCH.problems.items()):
        print(f"va batch: {name}: skipped: {problem.message}", file=sys.stderr)
    if BATCH.problems and DRIVES and not config.get("finished_only"):
        # Plain snakemake's last line says which jobs it left out, whatever it printed before.
        atexit.register(print, left_out_line(BATCH), file=sys.stderr)
    JOBS = BATCH.jobs
    PREFIX = "{name}/"
else:
    JOB = load_job(Path(config["job"]))
    if (
        not PLANNED
        and not config.get("finished_only")
        and not Path(JOB.basename).exists()
    ):
        PLANS[""] = plan_run(JOB, folder_of(""))
    JOBS = {"": JOB}
    PREFIX = ""

if config.get("finished_only"):
    # `va report`: only the jobs whose video is finished, so no other job is run or recorded as a run.
    JOBS = {
        name: job for name, job in JOBS.items() if Path(name, job.basename).exists()
    }


wildcard_constraints:
    name="[^/]+",
    final=r"[^/]+\.mp4",
    batch=r"\d{4}",
    chunk=r"\d{4}",
    segment=r"\d{4}",


def at(path):
    """A path inside the job's folder (the working directory itself for one job)."""
    return PREFIX + path


def in_run(wildcards, path):
    """A concrete path inside the job's folder, for input functions."""
    return f"{wildcards.name}/{path}" if PREFIX else path


def job_of(wildcards):
    """The job a rule instance works for."""
    return JOBS[wildcards.get("name", "")]


def plan_for(name):
    """The plan of job ``name``: planned when the graph loaded (a plain ``snakemake``), else the one
    ``va`` (or the main process) wrote to its ``prepare/plan.json``, loaded once."""
    if name not in PLANS:
        PLANS[name] = load_plan(folder_of(name).plan)
    return PLANS[name]


def plan_of(wildcards):
    """The plan of the job a rule instance works for."""
    return plan_for(wildcards.get("name", ""))


def plan_settings(rule):
    """The params function of ``rule``: its settings (va.rule_settings), the typed slice of the plan
    its output depends on, which its script parses. Snakemake's params trigger then reruns a rule when
    (and only when) its settings changed, so an edited job rebuilds what the edit affects.
    """

    @of_wildcards
    def settings(wildcards):
        plan = plan_of(wildcards)
        part = wildcards.get("chunk") or wildcards.get("segment")
        return settings_json(rule_settings(plan, rule, part))

    return settings


@of_wildcards
def job_audio(wildcards):
    return str(job_of(wildcards).audio)


@of_wildcards
def job_start(wildcards):
    return str(job_of(wildcards).start)


# The job's workdir, where its manifest and event log live: a pattern of the job's name rather than a
# function of it, so a graph of thousands of jobs does not call (and inspect) one for each rule.
_HERE = str(Path.cwd()).replace("{", "{{").replace("}", "}}")
RUN_DIR = f"{_HERE}/{{name}}" if PREFIX else _HERE


def final_named(pattern):
    """A path named after the finished video: its basename is a wildcard in a batch."""
    return at(pattern) if PREFIX else pattern.format(final=JOB.basename)


def final_videos():
    """The graph's targets: every job's video that is not there yet. A finished video is never a
    target again, so no later call (a newer input's mtime, changed code) can rebuild it over the
    user's file; deleting it is how a user asks for it anew."""
    finals = (
        f"{name}/{job.basename}" if name else job.basename for name, job in JOBS.items()
    )
    return [final for final in finals if not Path(final).exists()]


# The run's record at the graph's start and end (va.lifecycle): the Snakefile's onstart and onerror.
GRAPH_RUN = GraphRun(
    root=Path.cwd(),
    jobs=JOBS,
    plan_for=plan_for,
    planned=PLANNED,
    batch=bool(PREFIX),
)


def record_finished(success):
    """At the end: the record of each job's run (va.lifecycle.GraphRun.finished). A batch that left jobs
    out (plain snakemake; va batch leaves them out itself) then ends with exit 3.
    """
    GRAPH_RUN.finished(success)
    if success and config.get("batch") and BATCH.problems:
        if not config.get("finished_only"):
            sys.exit(int(ExitCode.BATCH_INCOMPLETE))


@of_wildcards
def video_group(wildcards):
    """The cluster job group of a video's rules when all of them are cheap (audio, still, camera move,
    the audiogram, encode: ffmpeg on a CPU, a second or so each): one Slurm job makes the whole video
    instead of one a rule. The captions stay out: beside the audio and the still (no input of theirs)
    they would widen the group to 3 CPUs, more than a 2-CPU node has. A video with ComfyUI or a lip-sync tool (a command or a service)
    has none: those are the expensive jobs, each a cluster job of its own, and they sit between the
    cheap ones (a group may not depend on a job outside it that depends on the group). Groups act only
    on a cluster (profiles/slurm); locally Snakemake ignores them.
    """
    plan = plan_of(wildcards)
    provider = plan.stages.lipsync
    if plan.stages.visual.generated or (
        provider is not None and provider_of(provider).type != "audiogram"
    ):
        return None
    if provider is not None and plan.lipsync.chunked:
        return None  # chunks run side by side: in one group they would add up to a node's CPUs
    return group_id(wildcards.get("name", ""))


# The graph's cluster jobs (va.cluster_watch), watched from its start (the Snakefile's onstart).
CLUSTER_WATCH = ClusterWatch.of(Path.cwd(), JOBS, GRAPH_RUN.again)
# A failed cluster job of a video's rules keeps what its finished rules made, in every Snakemake process.
keep_outputs_of_finished_rules(partial(finished_in_attempt, root=Path.cwd()))


@of_wildcards
def assemble_inputs(wildcards):
    """Inputs of assemble_visual: every segment's clip for a template that generates segments, else the
    list of the batches' results."""
    generation = plan_of(wildcards).comfyui
    if generation.contract is not None:
        names = [segment.name for segment in generation.segments]
        return {
            "segments": [in_run(wildcards, f"comfyui/segments/{n}.mp4") for n in names]
        }
    return {"generated": in_run(wildcards, "comfyui/generated.json")}


@of_wildcards
def batch_inputs(wildcards):
    """Inputs of comfyui_batch: the held still when the template binds the start image (each batch
    uploads it); a template that binds none (text to image) has no input, and its batches start with
    the graph instead of after the still."""
    workflow_id = job_of(wildcards).comfyui.workflow_ids[0]
    if template_of(workflow_id).binds_start_image:
        return {"still": ancient(in_run(wildcards, "frames/still.png"))}
    return {}


@of_wildcards
def segment_inputs(wildcards):
    """Inputs of one segment: the still, the padded audio its voice is cut from and, for a chained
    template, the clip of the segment before it (none for the first)."""
    generation = plan_of(wildcards).comfyui
    inputs = {
        "still": ancient(in_run(wildcards, "frames/still.png")),
        "audio": in_run(wildcards, "prepare/padded.wav"),
    }
    index = int(wildcards.segment)
    if generation.chained and index > 0:
        inputs["previous"] = in_run(wildcards, f"comfyui/segments/{index - 1:04d}.mp4")
    return inputs


@of_wildcards
def lipsync_inputs(wildcards):
    """Inputs of lipsync: the chunks' videos when the plan cuts the audio, else those of its one run."""
    stage = plan_of(wildcards).lipsync
    if stage.chunked:
        return {
            "chunks": [
                in_run(wildcards, f"lipsync/chunks/{chunk.name}.mp4")
                for chunk in stage.chunks
            ]
        }
    return lipsync_chunk_inputs(wildcards)


@of_wildcards
def lipsync_chunk_inputs(wildcards):
    """Inputs of a provider's run: the still, the padded audio, and the visual stage's video. The still
    depends only on the start and the geometry, which are in the rule's params."""
    inputs = {
        "still": ancient(in_run(wildcards, "frames/still.png")),
        "audio": in_run(wildcards, "prepare/padded.wav"),
    }
    visual = plan_of(wildcards).stages.visual_video
    if visual:
        inputs["visual"] = in_run(wildcards, visual)
    return inputs


PROVIDERS = {}
VIDAX_COMFYUI = []


def pool_of(job):
    """The ComfyUI pool of a job's stage (va.comfyui.pool.resolve_pool): the job's comfyui.url, else
    the profile's comfyui_servers (its config:), else vidax.json's; and a start the stage makes, if any.
    """
    if not VIDAX_COMFYUI:
        VIDAX_COMFYUI.append(load_config("vidax").data["comfyui"])
    return resolve_pool(job.comfyui.url, config, VIDAX_COMFYUI[0])


def comfyui_pool(wildcards):
    """The ComfyUI pool of the job, as the rule's params."""
    return pool_of(job_of(wildcards)).as_params()


TEMPLATES = {}


def comfyui_resource(name):
    """A resource of the ComfyUI job (cpus, mem_mb, gpus, runtime): with a server it starts itself, what
    its template declares (bindings' resources); else a light job that only talks to servers elsewhere.
    """

    @of_wildcards
    def resource(wildcards):
        job = job_of(wildcards)
        start = pool_of(job).start
        declared = None
        if start is not None:
            declared = template_of(job.comfyui.workflow_ids[0]).resources
        return getattr(job_request(start, declared), name)

    return resource


def template_of(workflow_id):
    """A ComfyUI template (va.comfyui.workflow), loaded once per graph."""
    if workflow_id not in TEMPLATES:
        TEMPLATES[workflow_id] = load_workflow(workflow_id)
    return TEMPLATES[workflow_id]


@of_wildcards
def comfyui_threads(wildcards):
    """The cores of this machine a ComfyUI job holds: none when it only talks to servers elsewhere (it
    waits on them, and a core it held would keep another video's audio, still or encode waiting, 8
    of them a batch on a pool of two servers); with a server it starts itself, the CPUs its template
    declares."""
    if pool_of(job_of(wildcards)).start is None:
        return 0
    return comfyui_resource("cpus")(wildcards)


#: Snakemake starts the ready job of the highest priority first. A video's ComfyUI stage starts as soon
#: as its own inputs exist, and the rules that make those inputs run before the other ready ones, so
#: that a batch's first prompt goes out after the first video's still and not after every video's audio
#: and still (Snakemake otherwise takes the jobs of the larger inputs first: every video's audio), and
#: the servers work while the other videos' files are made.
COMFYUI_PRIORITY = 2
COMFYUI_INPUT_PRIORITY = 1


@of_wildcards
def audio_priority(wildcards):
    """The padded audio's priority: an input of the ComfyUI stage when the template generates segments
    (each segment's voice is cut from it), else as any rule."""
    generation = plan_of(wildcards).comfyui
    if generation is not None and generation.contract is not None:
        return COMFYUI_INPUT_PRIORITY
    return 0


def provider_of(provider_id):
    """A lip-sync provider (va.lipsync.providers), loaded once per graph."""
    if provider_id not in PROVIDERS:
        PROVIDERS[provider_id] = get_provider(provider_id)
    return PROVIDERS[provider_id]


def lipsync_resource(name, joins=False):
    """A resource of lip-sync jobs (cpus, mem_mb, gpus, runtime): what the job's provider declares in
    lipsync.providers.json, so the request follows the tool (the audiogram: one CPU, little memory).
    With ``joins`` (for lipsync), a cut audio's job only joins its chunks' videos, so it asks for what
    a join takes.
    """

    @of_wildcards
    def resource(wildcards):
        plan = plan_of(wildcards)
        if joins and plan.lipsync.chunked:
            return getattr(JOIN_RESOURCES, name)
        return getattr(provider_of(plan.stages.lipsync).resources, name)

    return resource


@of_wildcards
def encode_inputs(wildcards):
    """Inputs of encode: the held still's loop, the padded audio, and the video of the lip-sync or the
    ComfyUI stage when there is one."""
    stages = plan_of(wildcards).stages
    inputs = {
        "loop": in_run(wildcards, "frames/still.mp4"),
        "audio": in_run(wildcards, "prepare/padded.m4a"),
    }
    if stages.captions != "none":
        inputs["captions"] = in_run(wildcards, "captions.srt")
    if stages.lipsync is not None:
        inputs["video"] = in_run(wildcards, "lipsync/output.mp4")
    elif stages.visual_video:
        inputs["video"] = in_run(wildcards, stages.visual_video)
    return inputs


@of_wildcards
def encode_cpus(wildcards):
    """The CPUs the encode asks a cluster for. In a video's group (a held still, a camera move, the
    audiogram: docs/SCALING.md) one, as each of the group's rules gets; the group's job runs them one
    after the other, and most of its time is its Snakemake's start, on one CPU; a node then runs as many videos as
    it has CPUs (on the 2-CPU test node 8 varied videos took 200 s so, 257 s with 2 for a picture's
    encode). Two when it is a job of its own, encoding a generated or lip-synced picture.
    """
    return 1 if video_group(wildcards) else 2


@of_wildcards
def final_video(wildcards):
    """The job's finished video, for the rules that read it."""
    return in_run(wildcards, job_of(wildcards).basename)


def report_targets():
    """What `va report` asks for: the report's figures of every finished video (the videos come in
    as the contact sheets' inputs), and the sync check's where its track is there."""
    figures = ["report/contact_sheet.png", "report/waveform.png"]
    targets = []
    for name in JOBS:
        folder = f"{name}/" if name else ""
        if Path(f"{folder}{SYNC_TRACK}").exists():
            figures_here = [*figures, "report/sync.png"]
        else:
            figures_here = figures
        targets += [f"{folder}{figure}" for figure in figures_here]
    return targets


#: The sync check's track of a lip-synced video (docs/LIPSYNC_INTERFACE.md#the-sync-check).
SYNC_TRACK = "lipsync/sync.json"


def report_labels(figure):
    """Labels of a file in the report: the job it belongs to and what it shows."""

    @of_wildcards
    def labels(wildcards):
        job = wildcards.get("name") or job_of(wildcards).path.stem
        return {"job": job, "figure": figure}

    return labels
