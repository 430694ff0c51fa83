"""cocopart backend for Intel TDX partitioning: TDX module, SEPT, TDCALL, L1/L2."""
