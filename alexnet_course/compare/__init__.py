"""``alexnet-course compare`` and ``bench``: the reference solutions end to end."""

from alexnet_course.compare.profiles import ARMS, PROFILES, Profile
from alexnet_course.compare.runner import add_arguments, run_compare

__all__ = ["ARMS", "PROFILES", "Profile", "add_arguments", "run_compare"]
