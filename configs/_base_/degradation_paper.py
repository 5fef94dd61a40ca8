# The paper's degradation setting, defined once: the keys of ./degradation.py (the public RASS code's value of every
# parameter) with the public code's operations, BasicSR's (ops='basicsr': DiffJPEG, the first resize with
# scale_factor=, Poisson levels from each image's distinct values), as the paper trained. The paper-size configs
# inherit this file and set model.data_preprocessor.degradation=_base_.paper_degradation; the tiny configs keep
# ./degradation.py's ops='libjpeg'. degradation_preprocessor itself is ./degradation.py's, unchanged.
_base_ = ['./degradation.py']
paper_degradation = dict(_base_.degradation_preprocessor.degradation, ops='basicsr')
