"""The MES/SPC bridge: quality.alert into the outbox, delivered to the MES webhook; SPC on the verdict stream."""
