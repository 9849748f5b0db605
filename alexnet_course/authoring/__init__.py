"""Authoring the course, apart from running it (otter's ``assign``): the learner stubs
generated from the solutions (``stubs``), the learner's release (``release``), Gradescope's
autograder bundle (``bundle``) and the GitHub Classroom workflow (``classroom``)."""
