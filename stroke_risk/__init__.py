"""stroke-risk's shared package: the library the stages, commands and the service import."""
