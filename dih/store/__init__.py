"""What is on disk: the content-keyed artifact store, its locks, atomic writes, and the reader of a
finished run's directory. The ground floor every other wing writes through."""
