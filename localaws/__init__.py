"""The embedded local AWS used by the demo and the tests: never imported by production code.

- :mod:`localaws.moto_server`: moto's HTTP server as a child process on 127.0.0.1;
- :mod:`localaws.eventbridge`: plays EventBridge's part (moto never fires schedules);
- :mod:`localaws.fixtures`: creates what ``condor_annex -setup`` would (bucket, lease function).
"""
