"""Grading machinery: stubs from solutions, the pytest plugin, teaching assertions, and the
class grader."""
