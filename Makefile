# Shortcuts for people who type `make`; tasks.py does the work and needs only python3.
.PHONY: demo test
demo:
	python3 tasks.py demo
test:
	python3 tasks.py test
