"""The trainer: runs the retraining jobs an admin starts, outside the gateway, into candidate model versions."""
