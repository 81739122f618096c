"""The BFL finetune API over httpx: requests, retries, body limits, and making server text safe."""
