"""The smallest training config the tests use: 32×32 images, 16×16 boxes, an 8-channel model, batches of 2."""

SMALL = ["image_size=[32,32]", "hole_size=[16,16]", "max_delta=[4,4]", "cnum=8", "d_cnum=8", "batch_size=2"]
