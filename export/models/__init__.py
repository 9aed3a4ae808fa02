"""The models segexport exports, one module per family as torchvision has them: `fcn` (torchvision's
FCN-ResNet18/50/101), `unet` (our U-Net and the bundled reference model), `user` (`package.module:factory`);
`base` is what every builder returns, `checkpoints` the state dicts users give, `zoo` the names and `build`."""
