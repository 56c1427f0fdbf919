# Adaptation study, same-task part (tools/run_study.py --parts same-task): the
# first-order network of the paper's own experiment, pretrained and adapted
# on the same task. All ten Fashion-MNIST classes; train images from the
# training file (its fixed val part excluded), val from that val part, test
# from the official test file. A CIFAR-style ResNet-18 at widths 32-256, so
# that a rank-8 adapter is at most 1/4 of every adapted layer's channels
# (the 5-class study's widths 8-64 are not low-rank for rank 8).
_base_ = './resnet18-cifar_fmnist-source.py'

all_classes = list(range(10))
num_classes = 10
width = 32

model = dict(
    backbone=dict(stem_channels=width, base_channels=width),
    head=dict(num_classes=num_classes, in_channels=8 * width),
)
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=32, dataset=dict(class_ids=all_classes, part='source', per_class=3000)
)
val_dataloader = dict(dataset=dict(class_ids=all_classes))
test_dataloader = dict(dataset=dict(class_ids=all_classes))
work_dir = 'work_dirs/study/same-task/pretrain'
