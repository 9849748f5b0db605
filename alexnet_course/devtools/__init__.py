"""The project's own tooling, left out of the learner's release: the check a lent GPU
machine runs first (``gpu_check``) and the course site in a headless browser (``site``)."""
