# Shorthands for scripts/dev.sh, which does the real work (venv, install, run).
.PHONY: demo test
demo:
	bash scripts/dev.sh demo
test:
	bash scripts/dev.sh test
