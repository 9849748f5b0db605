"""The ``alexnet-course`` command: one entry point for data, stubs, grading and the comparison.

Every subcommand that reads CIFAR-10 takes ``--data-dir`` (default ``$ALEXNET_COURSE_DATA``
or ``./data``). Errors the user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from alexnet_course import CourseError, __version__


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    from alexnet_course.data.cifar10 import DATA_DIR_ENV

    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"folder holding cifar-10-batches-py/ (default: ${DATA_DIR_ENV} or "
                        "./data)")  # fmt: skip


def cmd_data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from alexnet_course.compare.lesson_code import LessonCode
    from alexnet_course.course import resolve_impl
    from alexnet_course.data import load_cifar10

    code = LessonCode(resolve_impl(None))  # the split and statistics are lesson 01's
    try:
        split = code.split
        code.split(np.repeat(np.arange(2), 2), 2, 0)
    except (NotImplementedError, CourseError) as e:
        split = None
        print(f"validation split not shown: lesson 01's stratified_split ({code.impl}) is not "
              f"ready ({str(e)[:120]})")  # fmt: skip
    data = load_cifar10(args.data_dir, val_size=args.val_size if split else 0, seed=args.seed,
                        download=args.download, split=split)  # fmt: skip
    print(f"source:   {data.source}")
    print(f"sha256:   {data.checksum}")
    print(f"classes:  {', '.join(data.classes)}")
    train_all = len(data.train) + len(data.val)
    print(f"images:   train {train_all} (= {len(data.train)} train + {len(data.val)} "
          f"validation, seed {data.val_seed}), test {len(data.test)}")  # fmt: skip
    width = max(len(c) for c in data.classes)
    print(f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}")
    k = data.num_classes
    counts = [s.class_counts(k) for s in (data.train, data.val, data.test)]
    for i, c in enumerate(data.classes):
        print(f"{c:<{width}}  {counts[0][i]:>6} {counts[1][i]:>6} {counts[2][i]:>6}")
    try:
        mean, std = code.channel_stats(data.train.images)
    except (NotImplementedError, CourseError) as e:
        print(f"channel statistics not shown: lesson 01's channel_stats ({code.impl}) is not "
              f"ready ({str(e)[:120]})")  # fmt: skip
        return 0
    print(f"train per-channel mean (R, G, B): {', '.join(f'{v:.4f}' for v in mean)}  "
          f"(lesson 01's channel_stats, {code.impl}, on the {len(data.train)} training images)")
    print("train per-channel std  (R, G, B): " + ", ".join(f"{v:.4f}" for v in std))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from alexnet_course.data import write_synthetic_cifar10

    folder = write_synthetic_cifar10(args.dir, n_train=args.n_train, n_test=args.n_test,
                                     seed=args.seed)  # fmt: skip
    print(f"wrote a synthetic CIFAR-10 ({args.n_train} train, {args.n_test} test) to {folder}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from alexnet_course.data.cifar10 import default_data_dir, locate

    folder = locate(args.data_dir or default_data_dir(), download_missing=True)
    print(f"CIFAR-10 is in {folder}")
    return 0


def cmd_stubs(args: argparse.Namespace) -> int:
    from alexnet_course.authoring.stubs import generate
    from alexnet_course.course import course_root

    root = args.root or course_root()
    changed = generate(root / "solutions", root / "lessons", check=args.check)
    if args.check:
        if changed:
            print("stubs out of date (run `alexnet-course stubs`):\n  " + "\n  ".join(changed))
            return 1
        print("stubs up to date")
        return 0
    print("\n".join(f"wrote {c}" for c in changed) or "stubs already up to date")
    return 0


def cmd_compare(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from alexnet_course.compare import run_compare
    from alexnet_course.compare.distributed import launch, under_torchrun

    if args.nproc is not None and not under_torchrun():  # this command again, under torchrun
        return launch(args.nproc, list(sys.argv[1:] if argv is None else argv))
    return run_compare(args, argv)


def cmd_report(args: argparse.Namespace) -> int:
    from alexnet_course.compare.runner import rewrite_report
    from alexnet_course.provenance import public_path

    rewrite_report(args.folder, impl=args.impl, data_dir=args.data_dir)
    print(f"report: {public_path(args.folder / 'report.md')} (figures beside it)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json
    import os

    from alexnet_course.compare.bench import run_bench
    from alexnet_course.course import resolve_impl
    from alexnet_course.data import load_cifar10

    impl = resolve_impl(args.impl)
    data = load_cifar10(args.data_dir, val_size=0, download=not args.no_download)
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = run_bench(data, impl=impl, steps=args.steps, batch_size=args.batch_size,
                       size=args.size, rounds=args.rounds, allow_bf16=not args.no_bf16,
                       compile=args.compile, compile_backend=args.compile_backend)  # fmt: skip
    result["provenance"] = _bench_provenance(args, data, load)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def _bench_provenance(args: argparse.Namespace, data, load: list | None) -> dict:
    """What a committed bench file needs beside its numbers: command, machine, versions."""
    import os

    from alexnet_course.device import pick_device
    from alexnet_course.provenance import common_record, public_path

    return {**common_record(pick_device()),
            "load_average_at_start": load and [round(x, 2) for x in load],
            "load_average_at_end": ([round(x, 2) for x in os.getloadavg()]
                                    if hasattr(os, "getloadavg") else None),
            "note": args.note,
            "data_source": f"{args.data_label or 'CIFAR-10'} at {public_path(data.source)}"}  # fmt: skip


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from alexnet_course.devtools.gpu_check import run_gpu_check

    return run_gpu_check(args)


def cmd_grade(args: argparse.Namespace) -> int:
    from alexnet_course.course import course_root
    from alexnet_course.grading.grader import GradeInterrupted, grade, summary_table

    lessons = [x.strip() for x in args.lessons.split(",")] if args.lessons else None
    tasks = [x.strip() for x in args.tasks.split(",")] if args.tasks else None
    try:
        results = grade(args.submissions, args.out, course=args.course or course_root(),
                        lessons=lessons, hidden=args.hidden, timeout=args.timeout,
                        jobs=args.jobs, memory_mb=args.memory_mb, disk_mb=args.disk_mb,
                        processes=args.processes,
                        sandbox_tier="none" if args.no_sandbox else args.sandbox,
                        uid_pool=args.uid_pool, lesson_budget=args.lesson_budget,
                        budget_factor=args.budget_factor, tasks=tasks,
                        draw_seed=args.draw_seed)  # fmt: skip
    except GradeInterrupted as e:
        print(f"alexnet-course: {e}", file=sys.stderr)
        return 130
    print(summary_table(results))
    print(f"gradebook: {args.out / 'gradebook.csv'}; per submission: {args.out}/<name>/results.json")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from alexnet_course.authoring.release import release
    from alexnet_course.course import course_root

    course = args.course or course_root()
    stubs = release(course, args.out)
    print(f"wrote the learner release to {args.out} ({len(stubs)} stub files, no solutions)")
    if args.classroom:
        from alexnet_course.authoring.classroom import add_classroom

        wf = add_classroom(course, args.out)
        print(f"GitHub Classroom workflow: {wf} (feedback in the learner's repository, not "
              "proof: grade marks that count with Gradescope or alexnet-course grade)")
    return 0


def cmd_autograder(args: argparse.Namespace) -> int:
    from alexnet_course.authoring.bundle import build_autograder
    from alexnet_course.course import course_root

    names = build_autograder(args.course or course_root(), args.lessons, args.out,
                             hidden=args.hidden, timeout=args.timeout,
                             lesson_budget=args.lesson_budget)  # fmt: skip
    print(f"wrote Gradescope's autograder bundle {args.out} ({len(names)} files: setup.sh, "
          "run_autograder, the course without solutions"
          f"{', hidden tests' if args.hidden else ''})")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from alexnet_course.devtools.site import main as site_main

    return site_main(args)


def cmd_mutants(args: argparse.Namespace) -> int:
    from alexnet_course.devtools.mutants import main as mutants_main

    return mutants_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alexnet-course",
        description="Rebuild AlexNet in PyTorch and Keras, train it on CIFAR-10, compare it "
        "with a pretrained AlexNet.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="CIFAR-10: info, synth, download")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = dsub.add_parser("info", help="print what was found: path, counts, channel stats")
    _add_data_dir(info)
    info.add_argument("--download", action="store_true", help="download when missing")
    info.add_argument("--val-size", type=int, default=5000,
                      help="validation images held out of train (default 5000)")
    info.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    info.set_defaults(func=cmd_data_info)
    synth = dsub.add_parser("synth", help="write a small synthetic CIFAR-10 to DIR")
    synth.add_argument("dir", type=Path)
    synth.add_argument("--n-train", type=int, default=1000, help="default 1000")
    synth.add_argument("--n-test", type=int, default=200, help="default 200")
    synth.add_argument("--seed", type=int, default=0, help="default 0")
    synth.set_defaults(func=cmd_data_synth)
    dl = dsub.add_parser("download", help="download the official archive (verified md5)")
    _add_data_dir(dl)
    dl.set_defaults(func=cmd_data_download)

    cmp_ = sub.add_parser("compare", help="run the reference comparison end to end")
    from alexnet_course.compare import add_arguments

    add_arguments(cmp_)
    _add_data_dir(cmp_)
    cmp_.set_defaults(func=cmd_compare)

    rep = sub.add_parser("report", help="draw a run folder's figures and report.md again from its "
                         "results.json files")  # fmt: skip
    rep.add_argument("folder", type=Path, help="a compare --out folder")
    rep.add_argument("--impl", choices=("solutions", "lessons"), default=None,
                     help="whose lesson 05 analyses the results (default: solutions where they "
                          "exist)")  # fmt: skip
    rep.add_argument("--data-dir", type=Path, default=None,
                     help="also draw the sample grid from this CIFAR-10 folder's test images")
    rep.set_defaults(func=cmd_report)

    gr = sub.add_parser("grade", help="grade submissions into results.json files and a gradebook")
    gr.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                    help="a folder or .zip holding a learner's copy of lessons/")
    gr.add_argument("--out", type=Path, required=True, help="where results and gradebook go")
    gr.add_argument("--lessons", default=None,
                    help="comma-separated lessons to grade (default: all)")
    gr.add_argument("--hidden", type=Path, default=None,
                    help="folder of hidden tests, HIDDEN/NN_name/test_*.py")
    gr.add_argument("--timeout", type=float, default=120.0,
                    help="time limit per graded test in seconds (default 120)")
    gr.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    gr.add_argument("--memory-mb", type=int, default=6144,
                    help="memory cap of each submission, all its processes together, in MB "
                         "(default 6144)")  # fmt: skip
    gr.add_argument("--disk-mb", type=int, default=1024,
                    help="what each submission may write, all its processes together, in MB "
                         "(default 1024)")  # fmt: skip
    gr.add_argument("--processes", type=int, default=256,
                    help="processes and threads each submission may run at once (default 256)")
    gr.add_argument("--sandbox", choices=("auto", "bwrap", "uid", "none"), default="auto",
                    help="where learner code runs: bwrap (bubblewrap), uid (a pool uid, for "
                         "containers without user namespaces; needs root), none (a plain "
                         "process of your user: only for a class you trust); auto (default): "
                         "bwrap where it starts, else uid where the grader is root, else stop")  # fmt: skip
    gr.add_argument("--no-sandbox", action="store_true", help="the same as --sandbox none")
    gr.add_argument("--uid-pool", default=None, metavar="FIRST-LAST",
                    help="uids for learner code when the grader is root (default 61000-61063; "
                         "two per submission graded at once; no user may own them)")  # fmt: skip
    gr.add_argument("--lesson-budget", type=float, default=None, metavar="S",
                    help="seconds each submission may spend on each lesson (default: "
                         "--budget-factor times the reference solution's time, measured first, "
                         "plus 60 s)")  # fmt: skip
    gr.add_argument("--budget-factor", type=float, default=5.0,
                    help="see --lesson-budget (default 5)")
    gr.add_argument("--draw-seed", type=int, default=None, metavar="N",
                    help="seed of the drawn (Hypothesis) fixtures, the same for every "
                         "submission (default: a fresh random one, printed; give it to "
                         "repeat a run's draws)")  # fmt: skip
    gr.add_argument("--tasks", default=None, metavar="3.2,3.11",
                    help="grade only these tasks (default: all)")
    gr.add_argument("--course", type=Path, default=None,
                    help="the instructor's course checkout (default: this one)")
    gr.set_defaults(func=cmd_grade)

    rel = sub.add_parser("release", help="write the learner's copy of the course (no solutions)")
    rel.add_argument("out", type=Path)
    rel.add_argument("--course", type=Path, default=None, help="default: this checkout")
    rel.add_argument("--classroom", action="store_true",
                     help="add .github/workflows/classroom.yml (GitHub Classroom autograding: "
                          "one step per task)")  # fmt: skip
    rel.set_defaults(func=cmd_release)

    ag = sub.add_parser("autograder", help="build Gradescope's autograder bundle (a .zip)")
    ag.add_argument("lessons", nargs="+", metavar="LESSON", help="lesson folders, e.g. 03_torch_scratch")
    ag.add_argument("--out", type=Path, required=True, help="the .zip to write")
    ag.add_argument("--hidden", type=Path, default=None,
                    help="hidden tests: DIR/NN_name/test_*.py (graded after_published)")
    ag.add_argument("--timeout", type=float, default=120.0, help="seconds per test (default 120)")
    ag.add_argument("--lesson-budget", type=float, default=1200.0, metavar="S",
                    help="seconds each submission may spend on each lesson (default 1200)")
    ag.add_argument("--course", type=Path, default=None, help="default: this checkout")
    ag.set_defaults(func=cmd_autograder)

    bench = sub.add_parser("bench", help="the seed notebook's input pipeline against the "
                           "course's: training images/second and their ratio")  # fmt: skip
    _add_data_dir(bench)
    bench.add_argument("--steps", type=int, default=5,
                       help="timed training steps per round, after its warm-up (default 5)")
    bench.add_argument("--batch-size", type=int, default=32, help="default 32")
    bench.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    bench.add_argument("--impl", choices=("solutions", "lessons"), default=None,
                       help="whose AlexNet to train (default: solutions where they exist)")
    bench.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    bench.add_argument("--rounds", type=int, default=3,
                       help="interleaved rounds of --steps steps of each variant; each variant's "
                       "median step over them counts (default 3)")
    bench.add_argument("--no-bf16", action="store_true",
                       help="leave bf16 out (what a CPU without bf16 units runs)")
    bench.add_argument("--compile", action="store_true",
                       help="also measure torch.compile (and report its compile time); where it "
                       "fails, bench says why and measures the rest")
    bench.add_argument("--compile-backend", default="inductor",
                       help="torch.compile's backend for --compile (default inductor)")
    bench.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    bench.add_argument("--data-label", default=None,
                       help="name the data in the JSON's provenance (e.g. 'CIFAR-10 (JPEG copy)')")
    bench.add_argument("--note", default=None,
                       help="what else the JSON's provenance should say about the run (e.g. "
                       "what else the machine was running)")
    bench.set_defaults(func=cmd_bench)

    stubs = sub.add_parser("stubs", help="regenerate lessons/ stubs from solutions/")
    stubs.add_argument("--check", action="store_true",
                       help="only check that the committed stubs are up to date")
    stubs.add_argument("--root", type=Path, default=None, help="the course checkout")
    stubs.set_defaults(func=cmd_stubs)

    if importlib.util.find_spec("alexnet_course.devtools") is not None:  # not in a release
        _add_devtools(sub)
    return p


def _add_devtools(sub) -> None:
    """The project's own tooling (alexnet_course.devtools): the instructor's checkout only."""
    gc = sub.add_parser("gpu-check", help="on a lent GPU machine: the GPU tests, bench and one "
                        "epoch of each torch arm; images/s, TFLOP/s, peak memory, as JSON")  # fmt: skip
    from alexnet_course.devtools.gpu_check import add_arguments as add_gpu_check_arguments

    add_gpu_check_arguments(gc)
    gc.set_defaults(func=cmd_gpu_check)

    site = sub.add_parser("site", help="the course site: check it in headless Chromium, "
                          "screenshots, re-run its notebooks")  # fmt: skip
    ssub = site.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    for name, text in (("check", "build, serve on localhost and check every page (errors, "
                                 "layout, figures, notebook outputs)"),
                       ("screenshots", "full-page PNGs of every page into OUT"),
                       ("notebooks", "re-run the docs notebooks in place (reference solutions, "
                                     "generated data)")):  # fmt: skip
        sp = ssub.add_parser(name, help=text)
        if name == "screenshots":
            sp.add_argument("out", type=Path, metavar="OUT", help="folder for the PNGs")
        sp.add_argument("--site", type=Path, default=None,
                        help="an already built site folder (default: build one with mkdocs)")
        sp.add_argument("--chromium", default=None,
                        help="the Chromium binary (default: $CHROMIUM, else chromium on PATH)")
        sp.set_defaults(func=cmd_site)

    mut = sub.add_parser("mutants", help="mutation testing of solutions/ (mutmut) against each "
                         "lesson's graded suite; reports in docs/results/mutants/")  # fmt: skip
    from alexnet_course.devtools.mutants import add_arguments as add_mutants_arguments

    add_mutants_arguments(mut)
    mut.set_defaults(func=cmd_mutants)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # never changed after this line
    # TensorFlow's start-up lines (its CPU features, a failed cuInit on a machine without a
    # GPU) say nothing to a user of these commands: only its fatal errors are shown
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if args.func is cmd_compare:
            return int(cmd_compare(args, argv) or 0)
        return int(args.func(args) or 0)
    except CourseError as e:
        print(f"alexnet-course: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alexnet-course: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
