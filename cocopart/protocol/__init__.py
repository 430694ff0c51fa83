"""The one L2<->L1 protocol: ids, layouts and codecs (numbering follows the SVSM spec)."""
