// Package road implements RoAd (peft_type "ROAD", PEFT's RoadConfig): the
// output of an nn.Linear is rotated pair by pair. The outputs are split in
// groups of group_size; inside a group, element i of the first half and
// element i of the second half form a 2-D vector that is rotated by an
// angle theta and scaled by alpha:
//
//	y' = y * alpha cos(theta) + rotate_half(y) * alpha sin(theta)
//
// with rotate_half(y) = (-y2, y1) per group. The variants differ in how
// many angles and scales there are: road_1 shares one (theta, alpha) per
// pair (out/2 each), road_2 has one per output (out), road_4 has separate
// ones for the cosine and the sine terms (2*out).
//
// Merging replaces W by R W and b by R b (R the block-rotation matrix);
// unmerging applies R's inverse, which is computed exactly from the 2x2
// blocks. SetBatchAdapters gives PEFT's mixed-batch inference (a different
// adapter per batch row). The saved tensors are "road_theta" and
// "road_alpha".
package road
