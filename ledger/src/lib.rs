//! Offgrid-Net receipts, Merkle batches, ledger DAG, wallet transactions, quorum and settlement (pure domain logic).
