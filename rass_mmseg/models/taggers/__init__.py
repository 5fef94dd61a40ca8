"""Image taggers whose tags become text prompts: RAM and DAPE (:mod:`.ram_tagger`, head in :mod:`.ram_tagging_head`)."""
from .ram_tagger import RAMTagger
from .ram_tagging_head import RAMTaggingHead

__all__ = ['RAMTagger', 'RAMTaggingHead']
