# The two commands of the README. Both create (once) the pinned virtualenv via scripts/bootstrap.
.PHONY: demo test lint

demo:
	./scripts/demo

test:
	./scripts/test

lint:
	"$$(./scripts/bootstrap)/bin/ruff" check emo tests benchmarks
