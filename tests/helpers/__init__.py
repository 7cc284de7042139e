"""What several test packages share: the CI rule for missing servers, tiny models, Kafka readers,
a gateway stack, sample verdicts and a scoring service to start and stop. Fixtures stay in the
``conftest.py`` files; plain functions and constants live here and are imported normally."""
