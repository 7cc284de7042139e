"""Generated wire contracts (protos/diffqc/v1): run `make proto`, do not edit."""
