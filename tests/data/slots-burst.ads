Activity = "Idle"
AnnexName = "burst"
Arch = "X86_64"
CheckpointPlatform = "LINUX X86_64 5.15.0 normal N/A avx512f"
CloudInterruptible = true
Cpus = 1
Disk = 7812000
EC2InstanceID = "i-0a1"
GPUs = 0
HasFileTransfer = true
IsAnnex = true
IsValidCheckpointPlatform = (TARGET.JobUniverse =!= 1 || ((MY.CheckpointPlatform =!= undefined) && ((TARGET.LastCheckpointPlatform =?= MY.CheckpointPlatform) || (TARGET.NumCkpts == 0))))
Machine = "ip-10-0-0-11.ec2.internal"
Memory = 5632
MyType = "Machine"
Name = "slot1@ip-10-0-0-11.ec2.internal"
OpSys = "LINUX"
OpSysAndVer = "AlmaLinux9"
PartitionableSlot = true
Requirements = START && IsValidCheckpointPlatform && WithinResourceLimits
SlotType = "Partitionable"
Start = (true) && stringListMember(Owner, "alice")
State = "Unclaimed"
TargetType = "Job"
TotalSlotCpus = 2
TotalSlotMemory = 7680
WithinResourceLimits = (MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk && (TARGET.RequestGPUs =?= undefined || MY.GPUs >= TARGET.RequestGPUs))

Activity = "Busy"
AnnexName = "burst"
Arch = "X86_64"
CheckpointPlatform = "LINUX X86_64 5.15.0 normal N/A avx512f"
CloudInterruptible = true
Cpus = 1
Disk = 7812000
EC2InstanceID = "i-0a1"
GPUs = 0
HasFileTransfer = true
IsAnnex = true
IsValidCheckpointPlatform = (TARGET.JobUniverse =!= 1 || ((MY.CheckpointPlatform =!= undefined) && ((TARGET.LastCheckpointPlatform =?= MY.CheckpointPlatform) || (TARGET.NumCkpts == 0))))
Machine = "ip-10-0-0-11.ec2.internal"
Memory = 2048
MyType = "Machine"
Name = "slot1_1@ip-10-0-0-11.ec2.internal"
OpSys = "LINUX"
OpSysAndVer = "AlmaLinux9"
PartitionableSlot = false
Requirements = START && IsValidCheckpointPlatform && WithinResourceLimits
SlotType = "Dynamic"
Start = (true) && stringListMember(Owner, "alice")
State = "Claimed"
TargetType = "Job"
TotalSlotCpus = 2
TotalSlotMemory = 7680
WithinResourceLimits = (MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk && (TARGET.RequestGPUs =?= undefined || MY.GPUs >= TARGET.RequestGPUs))

Activity = "Idle"
AnnexName = "burst"
Arch = "X86_64"
CheckpointPlatform = "LINUX X86_64 5.15.0 normal N/A avx512f"
CloudInterruptible = true
Cpus = 2
Disk = 7812000
EC2InstanceID = "i-0b2"
GPUs = 0
HasFileTransfer = true
IsAnnex = true
IsValidCheckpointPlatform = (TARGET.JobUniverse =!= 1 || ((MY.CheckpointPlatform =!= undefined) && ((TARGET.LastCheckpointPlatform =?= MY.CheckpointPlatform) || (TARGET.NumCkpts == 0))))
Machine = "ip-10-0-0-12.ec2.internal"
Memory = 7680
MyType = "Machine"
Name = "slot1@ip-10-0-0-12.ec2.internal"
OpSys = "LINUX"
OpSysAndVer = "AlmaLinux9"
PartitionableSlot = true
Requirements = START && IsValidCheckpointPlatform && WithinResourceLimits
SlotType = "Partitionable"
Start = (true) && stringListMember(Owner, "alice")
State = "Unclaimed"
TargetType = "Job"
TotalSlotCpus = 2
TotalSlotMemory = 7680
WithinResourceLimits = (MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk && (TARGET.RequestGPUs =?= undefined || MY.GPUs >= TARGET.RequestGPUs))

Activity = "Idle"
AnnexName = "other"
Arch = "X86_64"
CheckpointPlatform = "LINUX X86_64 5.15.0 normal N/A avx512f"
CloudInterruptible = true
Cpus = 2
Disk = 7812000
EC2InstanceID = "i-0d4"
GPUs = 0
HasFileTransfer = true
IsAnnex = true
IsValidCheckpointPlatform = (TARGET.JobUniverse =!= 1 || ((MY.CheckpointPlatform =!= undefined) && ((TARGET.LastCheckpointPlatform =?= MY.CheckpointPlatform) || (TARGET.NumCkpts == 0))))
Machine = "ip-10-0-0-14.ec2.internal"
Memory = 7680
MyType = "Machine"
Name = "slot1@ip-10-0-0-14.ec2.internal"
OpSys = "LINUX"
OpSysAndVer = "AlmaLinux9"
PartitionableSlot = true
Requirements = START && IsValidCheckpointPlatform && WithinResourceLimits
SlotType = "Partitionable"
Start = (true) && stringListMember(Owner, "alice")
State = "Unclaimed"
TargetType = "Job"
TotalSlotCpus = 2
TotalSlotMemory = 7680
WithinResourceLimits = (MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk && (TARGET.RequestGPUs =?= undefined || MY.GPUs >= TARGET.RequestGPUs))
