# Shortcuts for people who type `make`; tasks.py does the work and needs only python3.
.PHONY: demo test docs
demo:
	python3 tasks.py demo
test:
	python3 tasks.py test
docs:
	python3 tasks.py docs
