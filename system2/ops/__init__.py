"""What ships and runs System2: worker health, queue depth, smoke tests, deploy and promote,
backups and tested restores. The ``system2 ops`` commands (system2/commands/ops.py) and the
``deploy/*`` scripts are thin fronts for these modules."""
