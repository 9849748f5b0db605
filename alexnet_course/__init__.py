"""alexnet-course: rebuild AlexNet in PyTorch and Keras, train it on CIFAR-10 and compare it
with an ImageNet-pretrained AlexNet.

The library holds what the lessons share: data loading (:mod:`alexnet_course.data`), the
device and seeding helpers (:mod:`alexnet_course.device`), the grading machinery
(:mod:`alexnet_course.grading`) and the command line (:mod:`alexnet_course.cli`).
"""

__version__ = "0.1.0"


class CourseError(Exception):
    """An error the user can fix; the CLI prints its message as one line, with no traceback."""
