"""``alexnet-course compare`` and ``bench``: the course's code end to end (:mod:`.runner`)."""

from alexnet_course.compare.profiles import ARMS, PROFILES, Profile


def add_arguments(parser) -> None:
    """``compare``'s options (:func:`.runner.add_arguments`)."""
    from alexnet_course.compare.runner import add_arguments as add

    add(parser)


def run_compare(args, argv: list[str] | None = None) -> int:
    """``compare`` itself (:func:`.runner.run_compare`)."""
    from alexnet_course.compare.runner import run_compare as run

    return run(args, argv)


__all__ = ["ARMS", "PROFILES", "Profile", "add_arguments", "run_compare"]
