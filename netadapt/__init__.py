"""NetAdapt: latency-targeted, layer-wise shrinking of an Arch (independent of `nas`)."""
