"""The stages after the search: NetAdapt wiring, final training, export, report."""
