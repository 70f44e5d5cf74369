"""ebi-mirror's performance benchmark suite: ``python -m benchmarks`` (see benchmarks/README.md).

Files are served by an nginx the suite starts on 127.0.0.1 (a real static server, so
the server is not what is measured); the ENA Portal API comes from the bundled archive
emulator, whose reports point at nginx. ebi-mirror and its peers (aria2c, curl, wget)
run alternately on the same files, every downloaded file is checked against the
catalog's size and MD5, and the results are printed as a table and saved as JSON.
"""
