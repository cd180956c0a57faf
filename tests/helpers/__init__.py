"""What several test modules share (one copy each): the import graph of the tree, process helpers."""
