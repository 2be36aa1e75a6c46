"""Operations: metrics (the counters and their collector), their HTTP exposition and target
files, `insane top`, and what a process does at its end. The bottom layer: everything may use
it, it uses nothing of the rest."""
