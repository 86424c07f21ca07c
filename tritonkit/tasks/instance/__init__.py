"""Instance segmentation (YOLO-seg heads): boxes plus a mask per object. Work in progress: mask math only."""
