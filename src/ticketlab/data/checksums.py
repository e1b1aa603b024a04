"""Expected SHA-256 of every file the loaders verify, keyed by (data set, file name).

For the gzipped IDX files the digest is of the decompressed contents: it identifies the data
whatever gzip settings a mirror used (the .gz bytes of faithful copies differ). One table,
so tests can point it at the tiny files they write.
"""

SHA256: dict[tuple[str, str], str] = {
    ("mnist", "train-images-idx3-ubyte.gz"): "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ("mnist", "train-labels-idx1-ubyte.gz"): "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ("mnist", "t10k-images-idx3-ubyte.gz"): "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ("mnist", "t10k-labels-idx1-ubyte.gz"): "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    # The archive itself (its MD5 is c58f30108f718f92721af3b95e74349a).
    ("cifar10", "cifar-10-python.tar.gz"): "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    # The JPEG stand-in archive of the shared development data.
    ("cifar10-jpeg", "cifar10-jpeg.tar.gz"): "2fa552af1268dacd094e8d228d3c14e46ff6a0f870045139e182e41c4b0cd49d",
}
