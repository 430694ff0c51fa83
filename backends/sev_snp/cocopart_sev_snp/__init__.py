"""cocopart backend for AMD SEV-SNP: VMPLs, RMP, GHCB, SVSM, AMD-SP."""
