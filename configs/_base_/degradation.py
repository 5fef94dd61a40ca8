# Online Real-ESRGAN second-order degradation (RASS training data) as an mmseg data preprocessor.
# Use it in a model config:  model = dict(data_preprocessor=degradation_preprocessor, ...)
# Set degrade='always' to also degrade val/test batches (a seeded, on-the-fly LQ benchmark), 'never' to switch it
# off.
# The degradation keys below are the values of the public RASS code; every key may be overridden. The operations
# default to ops='libjpeg'; ./degradation_paper.py sets ops='basicsr', the public code's operations, as the paper.
degradation_preprocessor = dict(
    type='DegradationDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # the RASS backbone takes images in [-1, 1]
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=64,  # override with size=crop_size to pad training batches to the crop
    degrade='train',
    train_seed=None,  # None: drawn from the run seed (randomness=dict(seed=...))
    test_seed=0,
    keep_hq=True,  # data_sample.gt_hq_img: the clean image, float RGB in [0, 1]
    degradation=dict(
        # stage 1
        kernel_range=[7, 21],
        kernel_list=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
        kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
        sinc_prob=0.1,
        blur_sigma=[0.2, 3.0],
        betag_range=[0.5, 4.0],
        betap_range=[1.0, 2.0],
        resize_prob=[0.2, 0.7, 0.1],  # up, down, keep
        resize_range=[0.15, 1.5],
        gaussian_noise_prob=0.5,
        noise_range=[1.0, 30.0],
        poisson_scale_range=[0.05, 3.0],
        gray_noise_prob=0.4,
        jpeg_range=[30.0, 95.0],
        # stage 2
        second_blur_prob=0.8,
        kernel_list2=['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
        kernel_prob2=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
        sinc_prob2=0.1,
        blur_sigma2=[0.2, 1.5],
        betag_range2=[0.5, 4.0],
        betap_range2=[1.0, 2.0],
        resize_prob2=[0.3, 0.4, 0.3],
        resize_range2=[0.3, 1.2],
        gaussian_noise_prob2=0.5,
        noise_range2=[1.0, 25.0],
        poisson_scale_range2=[0.05, 2.5],
        gray_noise_prob2=0.4,
        jpeg_range2=[30.0, 95.0],
        # final stage and all resizes
        final_sinc_prob=0.8,
        final_jpeg_first_prob=0.5,
        resize_mode_prob=[1 / 3, 1 / 3, 1 / 3],  # area, bilinear, bicubic
        rotation_range=[-3.141592653589793, 3.141592653589793],  # of anisotropic kernels, radians
        # which operations: 'libjpeg' (a libjpeg-faithful JPEG, F.interpolate(size=) resizes, Poisson noise on 256
        # levels) or 'basicsr' (the public RASS code's BasicSR ops: DiffJPEG, the first resize with scale_factor=,
        # Poisson levels from each image's distinct values; ~0.4 dB harsher for the same draws)
        ops='libjpeg',
        # where they run: 'auto' (OpenCV on CPU tensors with ops='libjpeg', torch otherwise), 'torch' or 'opencv'
        backend='auto',
    ))
