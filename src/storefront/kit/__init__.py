"""Pure helpers: nothing stateful, nothing of ours above them."""
